"""InMemoryJournal specifics: named stores and URLs (the contract covers the rest)."""

from __future__ import annotations

import uuid

import pytest

from casty.errors import ConfigurationError
from casty.journals import as_journal
from casty.journals.memory import InMemoryJournal
from casty.testing.journal_contract import make_entries


async def test_instances_with_one_name_share_one_store() -> None:
    name = f"shared-{uuid.uuid4().hex}"
    first, second = InMemoryJournal(name), InMemoryJournal(name)
    await first.write(make_entries("p", 1, 2))
    assert await second.highest_sequence_nr("p") == 2
    await first.aclose()
    assert await second.highest_sequence_nr("p") == 2


async def test_unnamed_instances_have_private_stores() -> None:
    first, second = InMemoryJournal(), InMemoryJournal()
    await first.write(make_entries("p", 1, 2))
    assert await second.highest_sequence_nr("p") == 0


async def test_memory_url_with_a_name_shares_the_store() -> None:
    name = f"url-{uuid.uuid4().hex}"
    await as_journal(f"memory://{name}").write(make_entries("p", 1, 1))
    assert await InMemoryJournal(name).highest_sequence_nr("p") == 1
    assert isinstance(as_journal("memory://"), InMemoryJournal)


@pytest.mark.parametrize("url", ["memory://x?size=3"])
def test_memory_url_with_options_raises_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        as_journal(url)


def test_empty_name_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        InMemoryJournal("")
