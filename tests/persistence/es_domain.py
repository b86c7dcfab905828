"""A small event-sourced domain for the persistence tests, a journal wrapper that can hold
back or fail calls, and a recording actor.

Kept in a plain module (not conftest) so a child process can import it by name: the msgpack
serializer decodes events by ``module:qualname`` and needs the module imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from casty.abc import MAX_SEQUENCE_NR, Journal, JournalEntry, SnapshotEntry
from casty.actors import ActorContext, ActorRef, ActorSystem, Behavior, Behaviors
from casty.errors import PersistFailed
from casty.persistence import SnapshotPolicy

# -- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Append:
    """Store one `Appended` event per item (atomically); reply with the items after it."""

    items: tuple[str, ...]
    reply_to: ActorRef[Any] | None = None


@dataclass(frozen=True, slots=True)
class Get:
    """Reply with the items at once (from on_command, no write)."""

    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class GetDurable:
    """Reply with the items once every earlier event is durable (``persisted((), then=...)``)."""

    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class AppendThenStop:
    item: str
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Unknown:
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class AppendUnencodable:
    """Persist an event the serializer cannot encode."""

    reply_to: ActorRef[Any]


# -- events and state -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Appended:
    item: str


@dataclass(frozen=True, slots=True)
class Opaque:
    """An event msgpack cannot encode (a field of an arbitrary class)."""

    thing: object


@dataclass(frozen=True, slots=True)
class Log:
    items: tuple[str, ...] = ()


def on_event(state: Log, event: Appended) -> Log:
    return Log((*state.items, event.item))


def on_command(ctx: ActorContext[Any], state: Log, command: Any) -> Behavior[Any]:
    match command:
        case Append(items, None):
            return Behaviors.persisted([Appended(item) for item in items])
        case Append(items, ActorRef() as append_to):
            return Behaviors.persisted(
                [Appended(item) for item in items],
                then=lambda s: append_to.tell(s.items),
                on_failure=append_to.tell,
            )
        case Get(get_to):
            get_to.tell(state.items)
            return Behaviors.same()
        case GetDurable(query_to):
            return Behaviors.persisted((), then=lambda s: query_to.tell(s.items))
        case AppendThenStop(item, last_to):
            ctx.self.tell(Stop())
            return Behaviors.persisted(Appended(item), then=lambda s: last_to.tell(s.items))
        case Stop():
            return Behaviors.stopped()
        case AppendUnencodable(fail_to):
            return Behaviors.persisted(Opaque(object()), on_failure=fail_to.tell)
        case _:
            return Behaviors.unhandled()


def log_entity(
    journal: Journal | str,
    entity_id: str = "e",
    *,
    snapshot_policy: SnapshotPolicy | None = None,
    handler: Callable[[ActorContext[Any], Log, Any], Any] = on_command,
    **options: Any,
) -> Behavior[Any]:
    """The log entity; ``handler`` replaces `on_command` (a test's variant of it)."""
    return Behaviors.event_sourced(
        entity_id=entity_id,
        journal=journal,
        initial_state=Log(),
        on_event=on_event,
        on_command=handler,
        snapshot_policy=snapshot_policy,
        **options,
    )


def is_failure(reply: object, cause: type[BaseException]) -> bool:
    return isinstance(reply, PersistFailed) and isinstance(reply.__cause__, cause)


# -- a journal wrapper for the tests ----------------------------------------------------------


@dataclass
class Controls:
    """What `ControlledJournal` does; tests flip these."""

    hold_writes: asyncio.Event | None = None  # writes wait until it is set
    hold_replays: asyncio.Event | None = None  # replays wait until it is set
    fail_writes: list[BaseException] = field(default_factory=list)  # for the next writes to come
    writes: list[list[JournalEntry]] = field(default_factory=list)  # every write, as received
    durable: int = 0  # writes that returned successfully
    waiting: int = 0  # writes held back right now
    replays: list[int] = field(default_factory=list)  # from_sequence_nr of each replay
    fail_replays: list[BaseException] = field(default_factory=list)  # for the next replays
    fail_snapshots: list[BaseException] = field(default_factory=list)  # for the next saves
    hold_snapshots: asyncio.Event | None = None  # snapshot saves wait until it is set
    snapshots: list[int] = field(default_factory=list)  # sequence_nr of each save asked


class ControlledJournal(Journal):
    """Forwards to a real journal, holding back or failing calls as `Controls` say.

    A test double for the journal under the entity (the entity is the code under test).
    """

    def __init__(self, inner: Journal, controls: Controls | None = None) -> None:
        self.inner = inner
        self.controls = controls if controls is not None else Controls()

    @classmethod
    def from_url(cls, url: Any, **options: Any) -> ControlledJournal:
        raise NotImplementedError

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        controls = self.controls
        controls.writes.append(list(entries))
        failure = controls.fail_writes.pop(0) if controls.fail_writes else None
        if controls.hold_writes is not None:
            controls.waiting += 1
            try:
                await controls.hold_writes.wait()
            finally:
                controls.waiting -= 1
        if failure is not None:
            raise failure
        await self.inner.write(entries)
        controls.durable += 1

    async def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        limit: int | None = None,
    ) -> AsyncIterator[JournalEntry]:
        controls = self.controls
        controls.replays.append(from_sequence_nr)
        if controls.hold_replays is not None:
            await controls.hold_replays.wait()
        if controls.fail_replays:
            raise controls.fail_replays.pop(0)
        async for entry in self.inner.replay(
            persistence_id, from_sequence_nr, to_sequence_nr, limit
        ):
            yield entry

    async def highest_sequence_nr(self, persistence_id: str) -> int:
        return await self.inner.highest_sequence_nr(persistence_id)

    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        await self.inner.delete_to(persistence_id, to_sequence_nr)

    async def save_snapshot(self, snapshot: SnapshotEntry) -> None:
        controls = self.controls
        controls.snapshots.append(snapshot.sequence_nr)
        if controls.hold_snapshots is not None:
            await controls.hold_snapshots.wait()
        if controls.fail_snapshots:
            raise controls.fail_snapshots.pop(0)
        await self.inner.save_snapshot(snapshot)

    async def load_snapshot(
        self,
        persistence_id: str,
        max_sequence_nr: int = MAX_SEQUENCE_NR,
        min_sequence_nr: int = 0,
        max_timestamp_ms: int | None = None,
    ) -> SnapshotEntry | None:
        return await self.inner.load_snapshot(
            persistence_id, max_sequence_nr, min_sequence_nr, max_timestamp_ms
        )

    async def delete_snapshots(
        self, persistence_id: str, max_sequence_nr: int, min_sequence_nr: int = 0
    ) -> None:
        await self.inner.delete_snapshots(persistence_id, max_sequence_nr, min_sequence_nr)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- a recording actor --------------------------------------------------------------------------

WAIT = 5.0  # seconds before a wait fails the test


class Recorder:
    """A real actor that records what it receives; `wait_for` waits with a deadline."""

    def __init__(self, system: ActorSystem, name: str) -> None:
        self.messages: list[Any] = []
        self._changed = asyncio.Event()
        self.ref: ActorRef[Any] = system.spawn(Behaviors.receive(self._receive), name)

    def _receive(self, ctx: ActorContext[Any], message: Any) -> Behavior[Any]:
        if isinstance(message, _Watch):
            ctx.watch(message.ref)
            return Behaviors.same()
        self.messages.append(message)
        self._changed.set()
        return Behaviors.same()

    async def wait_for(self, predicate: Callable[[list[Any]], bool]) -> list[Any]:
        async with asyncio.timeout(WAIT):
            while not predicate(self.messages):
                self._changed.clear()
                await self._changed.wait()
        return self.messages

    def watch(self, ref: ActorRef[Any]) -> None:
        """Receive ``Terminated(ref)`` once ``ref`` has stopped."""
        self.ref.tell(_Watch(ref))


class _Watch:
    def __init__(self, ref: ActorRef[Any]) -> None:
        self.ref = ref
