"""Failures: an unavailable journal stops the entity (supervision restarts it), rejected writes
tell the sender and the entity goes on, another writer makes it catch up, corrupt entries stop
it with CorruptEntry."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from es_domain import (
    Append,
    Appended,
    AppendUnencodable,
    ControlledJournal,
    Get,
    Recorder,
    is_failure,
    log_entity,
)

from casty.abc import JournalEntry
from casty.actors import ActorSystem, Backoff, Behaviors, SupervisorStrategy, Terminated
from casty.errors import (
    ActorStopped,
    CorruptEntry,
    EncodeError,
    JournalUnavailable,
    PersistFailed,
    SequenceConflict,
    StaleEpoch,
    WriteRejected,
)
from casty.journals.sqlite import SQLiteJournal
from casty.serializers import as_serializer
from casty.testing import wait_until


async def append(system: ActorSystem, ref: Any, *items: str) -> Any:
    return await system.ask(ref, lambda reply_to: Append(items, reply_to), timeout=5.0)


def stored(persistence_id: str, sequence_nr: int, item: str, epoch: int = 0) -> JournalEntry:
    """An entry as another writer would store it."""
    serializer = as_serializer("msgpack")
    event = Appended(item)
    return JournalEntry(
        persistence_id,
        sequence_nr,
        serializer.encode(event),
        serializer.name,
        serializer.manifest(event),
        epoch,
    )


async def test_an_unavailable_journal_fails_the_command_and_stops_the_entity(
    system: ActorSystem, controlled: ControlledJournal, recorder: Callable[[str], Recorder]
) -> None:
    ref = system.spawn(log_entity(controlled), "e")
    watcher = recorder("watcher")
    watcher.watch(ref)
    assert await append(system, ref, "a") == ("a",)
    controlled.controls.fail_writes.append(JournalUnavailable("disk gone"))
    assert is_failure(await append(system, ref, "b"), JournalUnavailable)
    await watcher.wait_for(lambda m: m == [Terminated(ref)])
    with pytest.raises(ActorStopped):
        await append(system, ref, "c")


async def test_supervision_restarts_the_entity_with_backoff_and_it_recovers(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    strategy = SupervisorStrategy.restart(
        backoff=Backoff(min_backoff=0.01, max_backoff=0.05), on=JournalUnavailable
    )
    ref = system.spawn(Behaviors.supervise(log_entity(controlled), strategy), "e")
    assert await append(system, ref, "a") == ("a",)
    controlled.controls.fail_writes.append(JournalUnavailable("disk gone"))
    assert is_failure(await append(system, ref, "b"), JournalUnavailable)
    # Told during the backoff: waits in the mailbox, handled by the recovered incarnation.
    assert await append(system, ref, "c") == ("a", "c")
    assert controlled.controls.replays == [1, 1]  # recovered twice, from scratch


async def test_an_unavailable_journal_during_recovery_is_retried_by_supervision(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    await controlled.inner.write([stored("e", 1, "kept")])
    controlled.controls.fail_replays.append(JournalUnavailable("not yet"))
    strategy = SupervisorStrategy.restart(
        backoff=Backoff(min_backoff=0.01, max_backoff=0.05), on=JournalUnavailable
    )
    ref = system.spawn(Behaviors.supervise(log_entity(controlled), strategy), "e")
    # Stashed by the first incarnation, handed to the second, which recovered.
    assert await system.ask(ref, Get, timeout=5.0) == ("kept",)
    assert await append(system, ref, "new") == ("kept", "new")
    assert controlled.controls.replays == [1, 1]


async def test_commands_stashed_during_a_failed_write_go_to_the_restarted_entity(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    controls = controlled.controls
    controls.hold_writes = asyncio.Event()
    strategy = SupervisorStrategy.restart(on=JournalUnavailable)
    ref = system.spawn(Behaviors.supervise(log_entity(controlled), strategy), "e")
    controls.fail_writes.append(JournalUnavailable("gone"))
    failed = asyncio.ensure_future(append(system, ref, "lost"))
    await wait_until(lambda: controls.waiting == 1)
    waiting = asyncio.ensure_future(append(system, ref, "kept"))  # stashed during the write
    await wait_until(lambda: not waiting.done())
    controls.hold_writes.set()
    assert is_failure(await failed, JournalUnavailable)
    assert await waiting == ("kept",)


async def test_a_rejected_write_tells_the_sender_and_the_entity_goes_on(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    ref = system.spawn(log_entity(controlled), "e")
    assert await append(system, ref, "a") == ("a",)
    controlled.controls.fail_writes.append(WriteRejected("payload too large"))
    reply = await append(system, ref, "b")
    assert is_failure(reply, WriteRejected)
    assert "payload too large" in str(reply)
    assert await system.ask(ref, Get) == ("a",)
    assert await append(system, ref, "c") == ("a", "c")
    # The rejected events left no gap: the next write reused their sequence numbers.
    assert [e.sequence_nr async for e in controlled.inner.replay("e")] == [1, 2]


async def test_a_rejected_batch_fails_every_command_in_it(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    controls = controlled.controls
    controls.hold_writes = asyncio.Event()
    ref = system.spawn(log_entity(controlled), "e")
    first = asyncio.ensure_future(append(system, ref, "a"))
    await wait_until(lambda: controls.waiting == 1)
    # Stashed while "a" is written, then written together: one write, three failures.
    rest = asyncio.gather(*(append(system, ref, str(n)) for n in range(3)))
    controls.fail_writes.append(WriteRejected("no"))  # for the next write: the batch of three
    controls.hold_writes.set()
    assert await first == ("a",)
    replies = await rest
    assert all(is_failure(reply, WriteRejected) for reply in replies)
    assert [len(write) for write in controls.writes] == [1, 3]
    assert await system.ask(ref, Get) == ("a",)


async def test_a_rejected_write_without_handler_is_logged_and_a_dead_letter(
    system: ActorSystem, controlled: ControlledJournal, dead_letters: Recorder, caplog: Any
) -> None:
    ref = system.spawn(log_entity(controlled), "e")
    controlled.controls.fail_writes.append(WriteRejected("never"))
    command = Append(("a",))  # no reply_to: no on_failure handler
    ref.tell(command)
    (letter,) = await dead_letters.wait_for(lambda m: len(m) == 1)
    assert letter.message == command and letter.recipient == ref
    assert letter.reason.startswith("persist failed: WriteRejected")
    assert "were not stored" in caplog.text
    assert await append(system, ref, "b") == ("b",)


async def test_an_unencodable_event_fails_only_its_command(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    ref = system.spawn(log_entity(controlled), "e")
    reply = await system.ask(ref, AppendUnencodable, timeout=5.0)
    assert is_failure(reply, EncodeError)
    assert controlled.controls.writes == []
    assert await append(system, ref, "a") == ("a",)


async def test_a_stale_epoch_is_rejected_and_the_entity_goes_on(
    system: ActorSystem, sqlite_journal: SQLiteJournal
) -> None:
    # A newer owner (epoch 5) has written; this entity still runs with epoch 0.
    await sqlite_journal.write([stored("e", 1, "newer", epoch=5)])
    ref = system.spawn(log_entity(sqlite_journal, epoch=0), "e")
    assert await system.ask(ref, Get) == ("newer",)
    assert is_failure(await append(system, ref, "old"), StaleEpoch)
    assert await system.ask(ref, Get) == ("newer",)
    assert await sqlite_journal.highest_sequence_nr("e") == 1


async def test_after_a_sequence_conflict_the_entity_catches_up_with_the_other_writer(
    system: ActorSystem, sqlite_journal: SQLiteJournal, sqlite_path: Any
) -> None:
    ref = system.spawn(log_entity(sqlite_journal), "e")
    assert await append(system, ref, "mine") == ("mine",)
    async with SQLiteJournal(sqlite_path) as other:  # another writer on the same file
        await other.write([stored("e", 2, "theirs")])
    reply = await append(system, ref, "lost")
    assert isinstance(reply, PersistFailed) and isinstance(reply.__cause__, SequenceConflict)
    assert await append(system, ref, "next") == ("mine", "theirs", "next")
    assert [e.sequence_nr async for e in sqlite_journal.replay("e")] == [1, 2, 3]


async def test_a_corrupt_payload_stops_the_entity_with_corrupt_entry(
    system: ActorSystem,
    sqlite_journal: SQLiteJournal,
    recorder: Callable[[str], Recorder],
    caplog: Any,
) -> None:
    good = stored("e", 1, "fine")
    await sqlite_journal.write([good])
    await sqlite_journal.write([JournalEntry("e", 2, b"\xc1\xc1", "msgpack", good.manifest)])
    # Restarting on JournalUnavailable does not retry a corrupt entry: it stays corrupt.
    strategy = SupervisorStrategy.restart(on=JournalUnavailable)
    ref = system.spawn(Behaviors.supervise(log_entity(sqlite_journal), strategy), "e")
    watcher = recorder("watcher")
    watcher.watch(ref)
    with pytest.raises(ActorStopped):  # stashed during recovery, dropped when it stopped
        await system.ask(ref, Get, timeout=5.0)
    await watcher.wait_for(lambda m: m == [Terminated(ref)])
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is CorruptEntry]
    assert len(failures) == 1
    message = str(failures[0].exc_info[1])
    assert "'e'" in message and "sequence_nr 2" in message and "msgpack" in message


async def test_a_row_of_the_wrong_type_stops_the_entity_with_corrupt_entry(
    system: ActorSystem,
    sqlite_journal: SQLiteJournal,
    sqlite_path: Path,
    recorder: Callable[[str], Recorder],
    caplog: Any,
) -> None:
    await sqlite_journal.write([stored("e", 1, "fine"), stored("e", 2, "damaged")])
    with sqlite3.connect(sqlite_path) as raw:  # another program damages the file
        raw.execute(
            "UPDATE casty_journal SET payload = 'text' WHERE persistence_id = 'e'"
            " AND sequence_nr = 2"
        )
    ref = system.spawn(log_entity(sqlite_journal), "e")
    watcher = recorder("watcher")
    watcher.watch(ref)
    await watcher.wait_for(lambda m: m == [Terminated(ref)])
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is CorruptEntry]
    assert len(failures) == 1
    assert "sequence_nr 2" in str(failures[0].exc_info[1])


async def test_an_unknown_serializer_is_a_corrupt_entry(
    system: ActorSystem,
    sqlite_journal: SQLiteJournal,
    recorder: Callable[[str], Recorder],
    caplog: Any,
) -> None:
    await sqlite_journal.write([JournalEntry("e", 1, b"\x00", "protobuf-v9", "x:Y")])
    ref = system.spawn(log_entity(sqlite_journal), "e")
    watcher = recorder("watcher")
    watcher.watch(ref)
    await watcher.wait_for(lambda m: m == [Terminated(ref)])
    await wait_until(lambda: "protobuf-v9" in caplog.text)
    assert "CorruptEntry" in caplog.text
