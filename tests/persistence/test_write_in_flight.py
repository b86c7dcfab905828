"""Entities on a group-commit journal (SQLite) hand a write over without suspending
(`casty.journals._checks.WriteNowait`): the write is in flight while the actor is idle, and
its outcome comes back as a message, or is awaited by the next message that arrives first.

A second connection holding SQLite's write lock (``BEGIN IMMEDIATE``) keeps a write in flight
for as long as a test needs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from es_domain import (
    Append,
    Appended,
    Get,
    GetDurable,
    Log,
    Recorder,
    log_entity,
    on_command,
    on_event,
)

from casty.actors import ActorContext, ActorSystem, Behavior, Behaviors, SupervisorStrategy
from casty.errors import ActorStopped
from casty.journals.sqlite import SQLiteJournal
from casty.testing import wait_until


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the file's write lock (another writer's transaction) until the block ends."""
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        yield
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()


async def test_concurrent_entities_reply_only_after_their_events_are_stored(
    system: ActorSystem, sqlite_journal: SQLiteJournal
) -> None:
    refs = [system.spawn(log_entity(sqlite_journal, f"e{n}"), f"e{n}") for n in range(20)]
    for ref in refs:
        assert await system.ask(ref, Get) == ()
    before = sqlite_journal.statistics()

    async def client(n: int) -> None:
        for count in range(1, 6):
            item = str(count)
            reply = await system.ask(refs[n], lambda reply_to, item=item: Append((item,), reply_to))
            assert len(reply) == count
            # Replied after the commit: the read connection already sees the event.
            assert await sqlite_journal.highest_sequence_nr(f"e{n}") >= count

    await asyncio.gather(*(client(n) for n in range(20)))
    after = sqlite_journal.statistics()
    assert after.writes - before.writes == 100
    assert after.rounds - before.rounds < 100  # the entities' writes shared rounds
    for n in range(20):
        assert [e.sequence_nr async for e in sqlite_journal.replay(f"e{n}")] == [1, 2, 3, 4, 5]


async def test_commands_arriving_during_a_write_wait_for_it_then_form_one_batch(
    system: ActorSystem,
    sqlite_journal: SQLiteJournal,
    sqlite_path: Path,
    recorder: Callable[[str], Recorder],
) -> None:
    ref = system.spawn(log_entity(sqlite_journal), "e")
    assert await system.ask(ref, Get) == ()  # recovered, the journal open
    probe = recorder("probe")
    before = sqlite_journal.statistics()
    with write_lock(sqlite_path):
        ref.tell(Append(("a",), probe.ref))
        await wait_until(lambda: sqlite_journal.statistics().rounds == before.rounds + 1)
        ref.tell(Append(("b",), probe.ref))
        ref.tell(Append(("c",), probe.ref))
        ref.tell(GetDurable(probe.ref))
        assert probe.messages == []  # all wait for the write in flight
    assert await probe.wait_for(lambda m: len(m) == 4) == [
        ("a",),
        ("a", "b"),
        ("a", "b", "c"),
        ("a", "b", "c"),
    ]
    after = sqlite_journal.statistics()
    assert (after.writes - before.writes, after.entries - before.entries) == (2, 3)
    assert [e.sequence_nr async for e in sqlite_journal.replay("e")] == [1, 2, 3]


async def test_stopping_an_entity_with_a_write_in_flight_fails_the_ask_at_once(
    system: ActorSystem, sqlite_journal: SQLiteJournal, sqlite_path: Path
) -> None:
    ref = system.spawn(log_entity(sqlite_journal), "e")
    assert await system.ask(ref, Get) == ()
    before = sqlite_journal.statistics()
    with write_lock(sqlite_path):
        reply = asyncio.ensure_future(
            system.ask(ref, lambda reply_to: Append(("a",), reply_to), timeout=30.0)
        )
        await wait_until(lambda: sqlite_journal.statistics().rounds == before.rounds + 1)
        await system.stop(ref)
        with pytest.raises(ActorStopped):
            await asyncio.wait_for(reply, 5.0)
    # The write itself was handed over whole: it commits once the lock is free.
    await wait_until(lambda: _highest(sqlite_path, "e") == 1)


async def test_a_failure_after_the_write_leaves_the_waiting_command_to_the_next_incarnation(
    system: ActorSystem,
    sqlite_journal: SQLiteJournal,
    sqlite_path: Path,
    recorder: Callable[[str], Recorder],
) -> None:
    def failing_then(ctx: ActorContext[Any], state: Any, command: Any) -> Behavior[Any]:
        if command == Append(("boom",)):
            return Behaviors.persisted(Appended("boom"), then=_raise)
        return on_command(ctx, state, command)

    entity = Behaviors.event_sourced(
        entity_id="e",
        journal=sqlite_journal,
        initial_state=Log(),
        on_event=on_event,
        on_command=failing_then,
    )
    ref = system.spawn(Behaviors.supervise(entity, SupervisorStrategy.restart()), "e")
    assert await system.ask(ref, Get) == ()
    probe = recorder("probe")
    before = sqlite_journal.statistics()
    with write_lock(sqlite_path):
        ref.tell(Append(("boom",)))
        await wait_until(lambda: sqlite_journal.statistics().rounds == before.rounds + 1)
        ref.tell(Append(("after",), probe.ref))  # waits for the write, which then fails the actor
    # The restarted entity recovers "boom" and handles the command that waited.
    assert await probe.wait_for(lambda m: len(m) == 1) == [("boom", "after")]


def _raise(state: object) -> None:
    raise RuntimeError("then failed")


def _highest(path: Path, persistence_id: str) -> int:
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT highest_sequence_nr FROM casty_journal_meta WHERE persistence_id = ?",
            (persistence_id,),
        ).fetchone()
    return 0 if row is None else int(row[0])
