"""Recovery: from events, from a snapshot plus events, stashing meanwhile, across journal
objects, processes and PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from es_domain import Append, ControlledJournal, Controls, Get, Recorder, log_entity

from casty.actors import ActorSystem, DeadLetterReason
from casty.errors import JournalUnavailable
from casty.journals import as_journal
from casty.journals.sqlite import SQLiteJournal
from casty.persistence import SnapshotPolicy
from casty.testing import wait_until
from casty.testing._postgres import drop_journal_tables, require_postgres_dsn

HERE = Path(__file__).resolve().parent


async def append(system: ActorSystem, ref: Any, *items: str) -> Any:
    return await system.ask(ref, lambda reply_to: Append(items, reply_to), timeout=5.0)


async def test_recovers_the_state_from_its_events(
    system: ActorSystem, sqlite_journal: SQLiteJournal
) -> None:
    ref = system.spawn(log_entity(sqlite_journal), "e")
    await append(system, ref, "a")
    await append(system, ref, "b", "c")
    other = system.spawn(log_entity(sqlite_journal, "other"), "other")
    await append(system, other, "z")
    await system.stop(ref)
    again = system.spawn(log_entity(sqlite_journal), "e")
    assert await system.ask(again, Get) == ("a", "b", "c")
    # It goes on numbering after the recovered events.
    assert await append(system, again, "d") == ("a", "b", "c", "d")
    assert await sqlite_journal.highest_sequence_nr("e") == 4


async def test_recovers_from_the_newest_snapshot_then_the_events_after_it(
    system: ActorSystem, sqlite_journal: SQLiteJournal
) -> None:
    journal = ControlledJournal(sqlite_journal, Controls())
    policy = SnapshotPolicy(every=3)
    ref = system.spawn(log_entity(journal, snapshot_policy=policy), "e")
    for n in range(7):
        await append(system, ref, str(n))

    async def snapshot_at_6() -> bool:
        snapshot = await sqlite_journal.load_snapshot("e")
        return snapshot is not None and snapshot.sequence_nr == 6

    await wait_until(snapshot_at_6)
    await system.stop(ref)
    again = system.spawn(log_entity(journal, snapshot_policy=policy), "e")
    assert await system.ask(again, Get) == tuple(str(n) for n in range(7))
    assert journal.controls.replays == [1, 7]  # the second recovery replayed only event 7


async def test_snapshot_retention_deletes_older_snapshots_and_events(
    system: ActorSystem, sqlite_journal: SQLiteJournal
) -> None:
    policy = SnapshotPolicy(every=2, keep=1, delete_events=True)
    ref = system.spawn(log_entity(sqlite_journal, snapshot_policy=policy), "e")
    for n in range(6):
        await append(system, ref, str(n))

    async def retained() -> bool:
        older = await sqlite_journal.load_snapshot("e", max_sequence_nr=5)
        first = [e.sequence_nr async for e in sqlite_journal.replay("e", limit=1)]
        newest = await sqlite_journal.load_snapshot("e")
        return older is None and first == [5] and newest is not None and newest.sequence_nr == 6

    await wait_until(retained)
    await system.stop(ref)
    again = system.spawn(log_entity(sqlite_journal, snapshot_policy=policy), "e")
    assert await system.ask(again, Get) == tuple(str(n) for n in range(6))


async def test_multiples_crossed_during_a_save_give_one_more_save(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    controls = controlled.controls
    controls.hold_snapshots = asyncio.Event()
    ref = system.spawn(log_entity(controlled, snapshot_policy=SnapshotPolicy(every=1)), "e")
    for item in "abc":
        await append(system, ref, item)
    assert controls.snapshots == [1]  # the save of 1 is held; 2 and 3 only marked it due
    controls.hold_snapshots.set()
    await wait_until(lambda: controls.snapshots == [1, 3])
    await wait_until(lambda: _snapshot_at(controlled, 3))


async def test_a_failed_snapshot_save_is_logged_and_the_next_multiple_saves(
    system: ActorSystem, controlled: ControlledJournal, caplog: Any
) -> None:
    controlled.controls.fail_snapshots.append(JournalUnavailable("disk full"))
    ref = system.spawn(log_entity(controlled, snapshot_policy=SnapshotPolicy(every=2)), "e")
    for item in "ab":
        await append(system, ref, item)
    await wait_until(lambda: "saving a snapshot of 'e' failed" in caplog.text)
    for item in "cd":
        await append(system, ref, item)
    await wait_until(lambda: _snapshot_at(controlled, 4))
    assert await system.ask(ref, Get) == ("a", "b", "c", "d")


async def _snapshot_at(journal: ControlledJournal, sequence_nr: int) -> bool:
    snapshot = await journal.inner.load_snapshot("e")
    return snapshot is not None and snapshot.sequence_nr == sequence_nr


async def test_commands_during_recovery_are_stashed_and_handled_in_order(
    system: ActorSystem, sqlite_journal: SQLiteJournal, recorder: Callable[[str], Recorder]
) -> None:
    first = system.spawn(log_entity(sqlite_journal), "first")
    await append(system, first, "old")
    await system.stop(first)

    journal = ControlledJournal(sqlite_journal, Controls(hold_replays=asyncio.Event()))
    ref = system.spawn(log_entity(journal), "e")
    probe = recorder("probe")
    for n in range(5):
        ref.tell(Append((str(n),), probe.ref))
    await wait_until(lambda: journal.controls.replays == [1])
    assert probe.messages == []
    assert journal.controls.hold_replays is not None
    journal.controls.hold_replays.set()
    replies = await probe.wait_for(lambda m: len(m) == 5)
    assert replies == [("old", *(str(n) for n in range(k + 1))) for k in range(5)]


async def test_stash_overflow_publishes_dead_letters(
    system: ActorSystem, controlled: ControlledJournal, dead_letters: Recorder
) -> None:
    controlled.controls.hold_replays = asyncio.Event()
    ref = system.spawn(log_entity(controlled, stash_capacity=2), "e")
    commands = [Append((str(n),)) for n in range(4)]
    for command in commands:
        ref.tell(command)
    dropped = await dead_letters.wait_for(lambda m: len(m) == 2)
    assert [(d.message, d.reason) for d in dropped] == [
        (commands[2], DeadLetterReason.STASH_OVERFLOW),
        (commands[3], DeadLetterReason.STASH_OVERFLOW),
    ]
    controlled.controls.hold_replays.set()
    await wait_until(lambda: controlled.controls.durable == 1)  # both stashed ones, one write
    assert await system.ask(ref, Get) == ("0", "1")
    assert len(dead_letters.messages) == 2


async def test_a_new_sqlite_journal_over_the_same_file_recovers_the_state(
    sqlite_path: Path,
) -> None:
    policy = SnapshotPolicy(every=4)
    async with SQLiteJournal(sqlite_path) as journal, ActorSystem(name="one") as system:
        ref = system.spawn(log_entity(journal, snapshot_policy=policy), "e")
        for n in range(10):
            await append(system, ref, str(n))
        expected = await system.ask(ref, Get)
    async with SQLiteJournal(sqlite_path) as journal, ActorSystem(name="two") as system:
        ref = system.spawn(log_entity(journal, snapshot_policy=policy), "e")
        assert await system.ask(ref, Get) == expected == tuple(str(n) for n in range(10))
        assert await append(system, ref, "10") == (*expected, "10")


_CHILD = """
import asyncio, sys
sys.path.insert(0, {here!r})
from es_domain import Append, Get, log_entity
from casty.actors import ActorSystem
from casty.persistence import SnapshotPolicy

async def main():
    async with ActorSystem(name="child") as system:
        ref = system.spawn(
            log_entity("sqlite:///{path}", snapshot_policy=SnapshotPolicy(every=5)), "e"
        )
        for n in range(12):
            await system.ask(ref, lambda r: Append((f"item-{{n}}",), r))
        print(",".join(await system.ask(ref, Get)))

asyncio.run(main())
"""


@pytest.mark.slow
async def test_a_new_process_recovers_exactly_the_state(
    system: ActorSystem, sqlite_path: Path
) -> None:
    script = _CHILD.format(here=str(HERE), path=str(sqlite_path))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    written = tuple(out.decode().strip().split(","))
    assert written == tuple(f"item-{n}" for n in range(12))
    ref = system.spawn(log_entity(f"sqlite:///{sqlite_path}"), "e")
    assert await system.ask(ref, Get) == written


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def postgres_dsn() -> str:
    return require_postgres_dsn()


@pytest_asyncio.fixture
async def postgres_table(postgres_dsn: str) -> AsyncIterator[str]:
    table = f"casty_es_{uuid.uuid4().hex[:12]}"
    yield table
    await drop_journal_tables(postgres_dsn, table)


@pytest.mark.postgres
async def test_recovers_from_snapshot_and_events_on_postgresql(
    postgres_dsn: str, postgres_table: str
) -> None:
    policy = SnapshotPolicy(every=3)
    journal = as_journal(postgres_dsn, table=postgres_table)
    async with journal, ActorSystem(name="pg-one") as system:
        ref = system.spawn(log_entity(journal, snapshot_policy=policy), "e")
        for n in range(8):
            await append(system, ref, str(n))

        async def snapshot_at_6_or_later() -> bool:
            # The save at 6 may find the one at 3 still running; it then saves the newest
            # state (7 or 8) once that one ends.
            snapshot = await journal.load_snapshot("e")
            return snapshot is not None and snapshot.sequence_nr >= 6

        await wait_until(snapshot_at_6_or_later)
    reopened = as_journal(postgres_dsn, table=postgres_table)
    async with reopened, ActorSystem(name="pg-two") as system:
        ref = system.spawn(log_entity(reopened, snapshot_policy=policy), "e")
        assert await system.ask(ref, Get) == tuple(str(n) for n in range(8))


async def test_recovery_streams_page_after_page(system: ActorSystem, sqlite_path: Path) -> None:
    # Pages of 3 events: recovery reads 11 events in four pages, and a page that ends exactly
    # at the last event (9 of them) still ends the stream.
    async with SQLiteJournal(sqlite_path, replay_page_size=3) as journal:
        ref = system.spawn(log_entity(journal), "e")
        await append(system, ref, *(str(n) for n in range(9)))
        await system.stop(ref)
        again = system.spawn(log_entity(journal, "e2", persistence_id="e"), "e2")
        assert await system.ask(again, Get) == tuple(str(n) for n in range(9))
        assert await append(system, again, "9", "10") == tuple(str(n) for n in range(11))
        await system.stop(again)
        third = system.spawn(log_entity(journal, "e3", persistence_id="e"), "e3")
        assert await system.ask(third, Get) == tuple(str(n) for n in range(11))


@pytest.mark.postgres
async def test_recovery_streams_page_after_page_on_postgresql(
    postgres_dsn: str, postgres_table: str
) -> None:
    journal = as_journal(postgres_dsn, table=postgres_table, replay_page_size=3)
    async with journal, ActorSystem(name="pg-pages") as system:
        ref = system.spawn(log_entity(journal), "e")
        await append(system, ref, *(str(n) for n in range(10)))
        await journal.delete_to("e", 2)  # recovery skips deleted events
        await system.stop(ref)
        again = system.spawn(log_entity(journal, "e2", persistence_id="e"), "e2")
        assert await system.ask(again, Get) == tuple(str(n) for n in range(2, 10))
        assert await append(system, again, "10") == tuple(str(n) for n in range(2, 11))
