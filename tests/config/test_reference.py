"""docs/configuration.md is generated from the schema; the two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from casty.config import config_keys
from casty.config.reference import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_page_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run `python -m casty.config.reference "
        "docs/configuration.md`"
    )


def test_the_page_documents_every_key_and_its_variable() -> None:
    page = render()
    for key in config_keys():
        assert f"`{key.attribute}`" in page
        assert f"`{key.env}`" in page
