"""The journal contract over every built-in journal, each chosen by its URL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from casty.journals import as_journal
from casty.testing.journal_contract import JournalContract, JournalFactory


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://contract-{uuid.uuid4().hex}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/j.db"
    url: str = request.getfixturevalue("postgres_journal_url")
    return url


class TestJournalContract(JournalContract):
    @pytest.fixture
    def journal_factory(self, journal_url: str) -> JournalFactory:
        return lambda: as_journal(journal_url)
