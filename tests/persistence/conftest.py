"""Fixtures for the event-sourcing tests: systems, journals, and a recording actor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from es_domain import ControlledJournal, Controls, Recorder

from casty.actors import (
    ActorSystem,
    DeadLetter,
    EventStreamSubscribe,
)
from casty.journals import as_journal
from casty.journals.memory import InMemoryJournal
from casty.journals.sqlite import SQLiteJournal


@pytest_asyncio.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem(name="es") as system:
        yield system


@pytest.fixture
def recorder(system: ActorSystem) -> Callable[[str], Recorder]:
    """``recorder(name)``: a recording actor in ``system`` that can also watch others."""

    return lambda name: Recorder(system, name)


@pytest.fixture
def dead_letters(system: ActorSystem, recorder: Callable[[str], Recorder]) -> Recorder:
    """A recorder subscribed to `DeadLetter` on ``system``."""
    probe = recorder("dead-letters")
    system.event_stream.tell(EventStreamSubscribe(event_type=DeadLetter, handler=probe.ref))
    return probe


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest_asyncio.fixture
async def sqlite_journal(sqlite_path: Path) -> AsyncIterator[SQLiteJournal]:
    journal = as_journal(f"sqlite:///{sqlite_path}")
    assert isinstance(journal, SQLiteJournal)
    async with journal:
        yield journal


@pytest.fixture
def controlled() -> ControlledJournal:
    """A `ControlledJournal` over a private `InMemoryJournal`."""
    return ControlledJournal(InMemoryJournal(), Controls())
