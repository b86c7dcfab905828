"""Persisting: then-after-durable, atomic multi-event writes, batching, stop, async handlers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from es_domain import (
    Append,
    Appended,
    AppendThenStop,
    ControlledJournal,
    Get,
    GetDurable,
    Log,
    Opaque,
    Recorder,
    Stop,
    Unknown,
    is_failure,
    log_entity,
    on_event,
)

from casty.abc import Journal
from casty.actors import (
    ActorContext,
    ActorRef,
    ActorSystem,
    Behavior,
    Behaviors,
    DeadLetterReason,
    Terminated,
)
from casty.errors import (
    ConfigurationError,
    EncodeError,
    PersistFailed,
    UnhandledMessage,
    WriteRejected,
)
from casty.journals.memory import InMemoryJournal
from casty.journals.sqlite import SQLiteJournal
from casty.persistence import Persisted, SnapshotPolicy, event_sourced, persisted
from casty.testing import wait_until


async def append(system: ActorSystem, ref: Any, *items: str) -> Any:
    return await system.ask(ref, lambda reply_to: Append(items, reply_to), timeout=5.0)


def spawn_log(system: ActorSystem, journal: Journal, on_command: Any) -> ActorRef[Any]:
    """Spawn entity ``"e"``: a `Log` built by ``on_event``, commands handled by ``on_command``."""
    return system.spawn(
        event_sourced(
            entity_id="e",
            journal=journal,
            initial_state=Log(),
            on_event=on_event,
            on_command=on_command,
        ),
        "e",
    )


async def test_then_runs_only_after_the_write_returned(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    controls = controlled.controls
    controls.hold_writes = asyncio.Event()
    durable_when_called: list[int] = []

    def on_command(ctx: ActorContext[Any], state: Log, command: Append) -> Behavior[Any]:
        def then(new_state: Log) -> None:
            durable_when_called.append(controls.durable)
            assert command.reply_to is not None
            command.reply_to.tell(new_state.items)

        return Behaviors.persisted(Appended(command.items[0]), then=then)

    ref = spawn_log(system, controlled, on_command)
    reply = asyncio.ensure_future(append(system, ref, "a"))
    await wait_until(lambda: controls.waiting == 1)
    assert not reply.done() and durable_when_called == []
    controls.hold_writes.set()
    assert await reply == ("a",)
    assert durable_when_called == [1]


async def test_then_sees_the_events_in_the_sqlite_file(
    system: ActorSystem, sqlite_journal: SQLiteJournal, sqlite_path: Path
) -> None:
    rows_seen: list[int] = []

    def on_command(ctx: ActorContext[Any], state: Log, command: Append) -> Behavior[Any]:
        def then(new_state: Log) -> None:
            # A separate connection: sees only what is committed.
            with sqlite3.connect(sqlite_path) as raw:
                (count,) = raw.execute("SELECT count(*) FROM casty_journal").fetchone()
            rows_seen.append(count)
            assert command.reply_to is not None
            command.reply_to.tell(new_state.items)

        return Behaviors.persisted([Appended(i) for i in command.items], then=then)

    ref = spawn_log(system, sqlite_journal, on_command)
    assert await append(system, ref, "a") == ("a",)
    assert await append(system, ref, "b", "c") == ("a", "b", "c")
    assert rows_seen == [1, 3]


async def test_a_multi_event_command_is_one_atomic_write(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    ref = system.spawn(log_entity(controlled), "e")
    assert await append(system, ref, "a", "b", "c") == ("a", "b", "c")
    (write,) = controlled.controls.writes
    assert [(e.sequence_nr, e.persistence_id, e.serializer) for e in write] == [
        (1, "e", "msgpack"),
        (2, "e", "msgpack"),
        (3, "e", "msgpack"),
    ]
    assert write[0].manifest == "es_domain:Appended"

    controlled.controls.fail_writes.append(WriteRejected("too large"))
    assert is_failure(await append(system, ref, "d", "e"), WriteRejected)
    assert await controlled.inner.highest_sequence_nr("e") == 3
    assert await system.ask(ref, Get) == ("a", "b", "c")


async def test_commands_arriving_during_a_write_form_the_next_write(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    controls = controlled.controls
    controls.hold_writes = asyncio.Event()
    ref = system.spawn(log_entity(controlled), "e")
    first = asyncio.ensure_future(append(system, ref, "0"))
    await wait_until(lambda: controls.waiting == 1)
    rest = [asyncio.ensure_future(append(system, ref, str(n))) for n in range(1, 6)]
    await wait_until(lambda: all(not r.done() for r in rest))  # they are stashed, not answered
    controls.hold_writes.set()
    replies = [await first] + [await r for r in rest]
    # Each then saw the state right after its own command, in command order.
    assert replies == [tuple(str(n) for n in range(k + 1)) for k in range(6)]
    assert [len(write) for write in controls.writes] == [1, 5]
    assert [e.sequence_nr for write in controls.writes for e in write] == [1, 2, 3, 4, 5, 6]


async def test_many_concurrent_commands_share_few_writes(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    ref = system.spawn(log_entity(controlled), "e")
    await system.ask(ref, Get)  # recovered: commands are no longer stashed for recovery
    replies = await asyncio.gather(*(append(system, ref, str(n)) for n in range(50)))
    assert replies == [tuple(str(n) for n in range(k + 1)) for k in range(50)]
    # The first command is written at once; the 49 that arrived meanwhile share one write.
    assert [len(write) for write in controlled.controls.writes] == [1, 49]


async def test_entities_answering_command_after_command_share_commits(
    system: ActorSystem, sqlite_journal: SQLiteJournal
) -> None:
    # Each entity writes again a few event-loop turns after its write returned (it replies,
    # its client sends the next command): the journal waits for them, so each wave of 20
    # writes goes in at most two rounds (SQLite commits one while the other's writers run),
    # not a first write alone and the rest after it.
    refs = [system.spawn(log_entity(sqlite_journal, f"e{n}"), f"e{n}") for n in range(20)]
    for ref in refs:
        await system.ask(ref, Get)  # recovered
    before = sqlite_journal.statistics()

    async def client(ref: Any) -> None:
        for k in range(5):
            assert await append(system, ref, str(k)) == tuple(str(j) for j in range(k + 1))

    await asyncio.gather(*(client(ref) for ref in refs))
    after = sqlite_journal.statistics()
    assert after.writes - before.writes == 100
    assert after.rounds - before.rounds <= 11  # 5 waves of two; the first may start alone


async def test_a_query_through_empty_persisted_waits_for_earlier_events(
    system: ActorSystem, controlled: ControlledJournal, recorder: Callable[[str], Recorder]
) -> None:
    controls = controlled.controls
    controls.hold_writes = asyncio.Event()
    ref = system.spawn(log_entity(controlled), "e")
    probe = recorder("probe")
    # Both handled before the write takes its batch: the query's callback joins the batch.
    ref.tell(Append(("a",)))
    ref.tell(GetDurable(probe.ref))
    await wait_until(lambda: controls.waiting == 1)
    assert probe.messages == []
    controls.hold_writes.set()
    assert await probe.wait_for(lambda m: len(m) == 1) == [("a",)]
    # With nothing pending it answers at once, without a write.
    assert await system.ask(ref, GetDurable) == ("a",)
    assert len(controls.writes) == 1


async def test_stop_waits_for_the_pending_write_and_its_callback(
    system: ActorSystem, controlled: ControlledJournal, recorder: Callable[[str], Recorder]
) -> None:
    controls = controlled.controls
    controls.hold_writes = asyncio.Event()
    ref = system.spawn(log_entity(controlled), "e")
    watcher = recorder("watcher")
    watcher.watch(ref)
    reply = asyncio.ensure_future(
        system.ask(ref, lambda reply_to: AppendThenStop("last", reply_to))
    )
    await wait_until(lambda: controls.waiting == 1)
    assert watcher.messages == []
    controls.hold_writes.set()
    assert await reply == ("last",)
    await watcher.wait_for(lambda m: m == [Terminated(ref)])
    assert await controlled.inner.highest_sequence_nr("e") == 1


async def test_a_stop_in_a_batch_waits_for_the_batch_and_drops_later_commands(
    system: ActorSystem,
    controlled: ControlledJournal,
    recorder: Callable[[str], Recorder],
    dead_letters: Recorder,
) -> None:
    controls = controlled.controls
    controls.hold_writes = asyncio.Event()
    ref = system.spawn(log_entity(controlled), "e")
    watcher = recorder("watcher")
    watcher.watch(ref)
    probe = recorder("probe")
    ref.tell(Append(("a",), probe.ref))
    await wait_until(lambda: controls.waiting == 1)
    # Stashed during the write, then handled as one batch: b, the stop, c.
    ref.tell(Append(("b",), probe.ref))
    ref.tell(Stop())
    late = Append(("c",), probe.ref)
    ref.tell(late)
    controls.hold_writes.set()
    await watcher.wait_for(lambda m: m == [Terminated(ref)])
    assert probe.messages == [("a",), ("a", "b")]
    assert [len(write) for write in controls.writes] == [1, 1]
    assert [(d.message, d.reason) for d in dead_letters.messages] == [
        (late, DeadLetterReason.RECIPIENT_STOPPED)
    ]


async def test_stopped_when_idle_stops_at_once(
    system: ActorSystem, controlled: ControlledJournal, recorder: Callable[[str], Recorder]
) -> None:
    ref = system.spawn(log_entity(controlled), "e")
    watcher = recorder("watcher")
    watcher.watch(ref)
    ref.tell(Stop())
    await watcher.wait_for(lambda m: m == [Terminated(ref)])


async def test_unhandled_command_fails_the_ask(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    ref = system.spawn(log_entity(controlled), "e")
    with pytest.raises(UnhandledMessage):
        await system.ask(ref, Unknown, timeout=5.0)
    assert await append(system, ref, "a") == ("a",)


async def test_async_command_handler_and_callbacks(
    system: ActorSystem, controlled: ControlledJournal
) -> None:
    async def on_command(ctx: ActorContext[Any], state: Log, command: Any) -> Behavior[Any]:
        await asyncio.sleep(0)  # really suspends: the actor continues in a task

        async def then(new_state: Log) -> None:
            await asyncio.sleep(0)
            command.reply_to.tell(new_state.items)

        if isinstance(command, Get):
            return Behaviors.persisted((), then=then)
        return Behaviors.persisted([Appended(i) for i in command.items], then=then)

    ref = spawn_log(system, controlled, on_command)
    replies = await asyncio.gather(*(append(system, ref, str(n)) for n in range(5)))
    assert sorted(len(r) for r in replies) == [1, 2, 3, 4, 5]
    assert await system.ask(ref, Get) == ("0", "1", "2", "3", "4")


async def test_async_failure_callbacks_are_awaited_in_order(
    system: ActorSystem, controlled: ControlledJournal, recorder: Callable[[str], Recorder]
) -> None:
    probe = recorder("probe")

    def on_command(ctx: ActorContext[Any], state: Log, command: str) -> Behavior[Any]:
        async def on_failure(error: PersistFailed) -> None:
            await asyncio.sleep(0)  # really suspends
            probe.ref.tell((command, type(error.__cause__)))

        event = Opaque(object()) if command == "unencodable" else Appended(command)
        return Behaviors.persisted(event, on_failure=on_failure)

    ref = spawn_log(system, controlled, on_command)
    controls = controlled.controls
    controls.hold_writes = asyncio.Event()
    ref.tell("a")
    await wait_until(lambda: controls.waiting == 1)
    for command in ("x", "unencodable", "y"):  # stashed, then one batch of x and y
        ref.tell(command)
    controls.fail_writes.append(WriteRejected("no"))
    controls.hold_writes.set()
    await probe.wait_for(lambda m: len(m) == 3)
    assert probe.messages == [
        ("unencodable", EncodeError),  # failed while handled, before the batch was written
        ("x", WriteRejected),
        ("y", WriteRejected),
    ]
    assert [len(write) for write in controls.writes] == [1, 2]
    assert await controlled.inner.highest_sequence_nr("e") == 1


async def test_on_command_returning_another_behavior_fails_the_actor(
    system: ActorSystem,
    controlled: ControlledJournal,
    recorder: Callable[[str], Recorder],
    caplog: Any,
) -> None:
    ref: ActorRef[Any] = system.spawn(
        event_sourced(
            entity_id="e",
            journal=controlled,
            initial_state=Log(),
            on_event=on_event,
            on_command=lambda ctx, state, command: Behaviors.ignore(),
        ),
        "e",
    )
    watcher = recorder("watcher")
    watcher.watch(ref)
    ref.tell("anything")
    await watcher.wait_for(lambda m: m == [Terminated(ref)])
    assert "on_command returned" in caplog.text


async def test_a_failing_command_handler_first_writes_the_open_batch(
    system: ActorSystem,
    controlled: ControlledJournal,
    recorder: Callable[[str], Recorder],
    caplog: Any,
) -> None:
    def on_command(ctx: ActorContext[Any], state: Log, command: Any) -> Behavior[Any]:
        if command == "boom":
            raise RuntimeError("boom")
        reply_to = command.reply_to
        return Behaviors.persisted(
            Appended(command.items[0]), then=lambda s: reply_to.tell(s.items)
        )

    ref = spawn_log(system, controlled, on_command)
    watcher = recorder("watcher")
    watcher.watch(ref)
    probe = recorder("probe")
    controls = controlled.controls
    controls.hold_writes = asyncio.Event()
    ref.tell(Append(("a",), probe.ref))
    await wait_until(lambda: controls.waiting == 1)
    ref.tell(Append(("b",), probe.ref))  # queued: opens the next batch
    ref.tell("boom")  # raises while that batch is open
    controls.hold_writes.set()
    # The batch of "b" is still written and answered; then the actor fails (and stops).
    await watcher.wait_for(lambda m: m == [Terminated(ref)])
    assert probe.messages == [("a",), ("a", "b")]
    assert [len(write) for write in controls.writes] == [1, 1]
    assert "RuntimeError('boom')" in caplog.text


async def test_a_url_journal_belongs_to_the_entity(system: ActorSystem, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/owned.db"
    ref = system.spawn(log_entity(url), "e")
    assert await append(system, ref, "a") == ("a",)
    await system.stop(ref)  # closes its journal
    again = system.spawn(log_entity(url), "e")
    assert await system.ask(again, Get) == ("a",)


async def test_entity_type_prefixes_the_persistence_id(system: ActorSystem) -> None:
    journal = InMemoryJournal()
    ref = system.spawn(log_entity(journal, "42", entity_type="Account"), "e")
    assert await append(system, ref, "a") == ("a",)
    assert await journal.highest_sequence_nr("Account|42") == 1
    assert await journal.highest_sequence_nr("42") == 0


class Point(NamedTuple):
    x: int
    y: int


def test_persisted_takes_one_event_or_a_list_or_tuple() -> None:
    one = persisted(Appended("a"))
    assert isinstance(one, Persisted) and one.events == (Appended("a"),)
    many = Behaviors.persisted([Appended("a"), Appended("b")])
    assert isinstance(many, Persisted) and many.events == (Appended("a"), Appended("b"))
    as_tuple = persisted((Appended("a"),))
    assert isinstance(as_tuple, Persisted) and as_tuple.events == (Appended("a"),)
    named = persisted(Point(1, 2))  # a NamedTuple is one event
    assert isinstance(named, Persisted) and named.events == (Point(1, 2),)


@pytest.mark.parametrize(
    "options",
    [
        {"entity_id": ""},
        {"entity_id": 7},
        {"entity_type": "a|b"},
        {"entity_type": "T", "persistence_id": "x"},
        {"persistence_id": ""},
        {"epoch": -1},
        {"stash_capacity": 0},
        {"snapshot_policy": 10},
        {"on_event": None},
        {"journal": 3},
    ],
)
def test_bad_arguments_raise_configuration_error(options: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "entity_id": "e",
        "journal": InMemoryJournal(),
        "initial_state": Log(),
        "on_event": on_event,
        "on_command": lambda ctx, state, command: Behaviors.same(),
    }
    arguments.update(options)
    with pytest.raises(ConfigurationError):
        Behaviors.event_sourced(**arguments)


@pytest.mark.parametrize("options", [{"every": 0}, {"every": 5, "keep": 0}, {"every": "5"}])
def test_bad_snapshot_policy_raises_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SnapshotPolicy(**options)
