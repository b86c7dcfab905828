"""Distributed data structures: the entity runner, and counters, maps and sets.

Each structure is a *kind*: its initial state, ``apply(state, event)`` and ``decide(state, op,
args) -> (events, answer)``. One runner turns a kind into the entity of a sharded type:

- **with a journal** (``Distributed(journal=...)``): an event-sourced entity
  (``Behaviors.event_sourced``, persistence id ``"<type>|<name>"``); the answer is sent once
  the events are durable (and, with ``replication=``, on ``min_acks`` replicas), queries too
  (``persisted((), then=...)``), so an answer never shows a state that a failover could lose.
  A failed write answers `DataRefused` and stops the entity, which recovers from the journal
  on its next command (its in-memory state may be ahead of the journal);
- **without**: the state lives in the entity only, and is lost when the entity's node is lost
  or the shard moves.

States are mutated in place (a copy per event would cost O(size)); answers are copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from casty.abc import Journal
from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.actors.ref import ActorRef
from casty.distributed.lease import check_seconds
from casty.errors import ConfigurationError, CoordinationError, PersistFailed

if TYPE_CHECKING:
    from casty.distributed.channel import Channel

__all__ = [
    "COUNTER",
    "MAP",
    "SET",
    "CounterAdded",
    "CounterSet",
    "DataCommand",
    "DataKind",
    "DataRefused",
    "DataReply",
    "DistributedCounter",
    "DistributedMap",
    "DistributedSet",
    "MapPut",
    "MapRemoved",
    "SetAdded",
    "SetRemoved",
    "Structure",
    "data_entity",
]

S = TypeVar("S")
_MISSING: tuple[bool, Any] = (False, None)


@dataclass(frozen=True, slots=True)
class DataCommand:
    """Run ``op`` with ``args`` on a structure's entity; answered `DataReply` or `DataRefused`."""

    op: str
    args: tuple[Any, ...]
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class DataReply:
    value: Any


@dataclass(frozen=True, slots=True)
class DataRefused:
    """The operation was refused (bad arguments) or its events were not stored (``reason``)."""

    reason: str


class DataKind(Protocol[S]):
    """What a data structure is: its state, its events and its operations."""

    def initial(self) -> S: ...

    def apply(self, state: S, event: Any) -> S: ...

    def decide(self, state: S, op: str, args: tuple[Any, ...]) -> tuple[list[Any], Any]:
        """The events ``op`` stores and its answer; ConfigurationError for a bad op."""
        ...


def data_entity(
    kind: Callable[[], DataKind[Any]], type_name: str, journal: Journal | None
) -> Callable[[str], Behavior[Any]]:
    """The entity factory of a structure's sharded type: see the module docstring."""

    def decide(
        ctx: ActorContext[Any], kinded: DataKind[Any], state: Any, cmd: DataCommand
    ) -> tuple[list[Any], Any] | None:
        try:
            return kinded.decide(state, cmd.op, cmd.args)
        except (ConfigurationError, TypeError, ValueError, IndexError) as exc:
            cmd.reply_to.tell(DataRefused(f"{type_name} {ctx.name!r}: {exc}"))
            return None

    def in_memory(kinded: DataKind[Any]) -> Behavior[Any]:
        state = kinded.initial()

        def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            nonlocal state
            if not isinstance(msg, DataCommand):
                return Behaviors.unhandled()
            decided = decide(ctx, kinded, state, msg)
            if decided is not None:
                events, answer = decided
                for event in events:
                    state = kinded.apply(state, event)
                msg.reply_to.tell(DataReply(answer))
            return Behaviors.same()

        return Behaviors.receive(receive)

    def factory(entity_id: str) -> Behavior[Any]:
        kinded = kind()
        if journal is None:
            return in_memory(kinded)

        def on_command(ctx: ActorContext[Any], state: Any, cmd: Any) -> Behavior[Any]:
            if not isinstance(cmd, DataCommand):
                return Behaviors.unhandled()
            decided = decide(ctx, kinded, state, cmd)
            if decided is None:
                return Behaviors.same()
            events, answer = decided
            reply_to = cmd.reply_to

            def failed(error: PersistFailed) -> None:
                reply_to.tell(DataRefused(f"not stored: {error.__cause__ or error}"))
                ctx.stop(ctx.self)  # the state in memory may be ahead: recover from the journal

            return Behaviors.persisted(
                events, then=lambda _: reply_to.tell(DataReply(answer)), on_failure=failed
            )

        return Behaviors.event_sourced(
            entity_id=entity_id,
            journal=journal,
            initial_state=kinded.initial(),
            on_event=kinded.apply,
            on_command=on_command,
            entity_type=type_name,
        )

    return factory


class Structure:
    """The client side of one data structure: ask its entity, raise its refusals.

    Args:
        channel: how requests reach the entities (a member's or a client's).
        type_name: the structure's sharded type.
        name: the structure's name (the entity id, non-empty).
        timeout: seconds an operation waits for its answer (> 0).

    Raises:
        ConfigurationError: a bad name or timeout.
    """

    _kind = "structure"

    def __init__(self, channel: Channel, type_name: str, name: str, *, timeout: float) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a {self._kind} name is a non-empty string, got {name!r}")
        self._channel = channel
        self._type_name = type_name
        self.name = name
        self._timeout = check_seconds("timeout", timeout)

    async def _call(self, op: str, *args: Any) -> Any:
        answer = await self._channel.ask(
            self._type_name,
            self.name,
            lambda reply_to: DataCommand(op, args, reply_to),
            self._timeout,
            CoordinationError,
            f"{self._kind} {self.name!r}",
        )
        if isinstance(answer, DataRefused):
            raise CoordinationError(answer.reason)
        if not isinstance(answer, DataReply):
            raise CoordinationError(f"{self._kind} {self.name!r}: unexpected answer {answer!r}")
        return answer.value


def _unknown(op: str) -> ConfigurationError:
    return ConfigurationError(f"unknown operation {op!r}")


# -- counter -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounterAdded:
    delta: int


@dataclass(frozen=True, slots=True)
class CounterSet:
    value: int


class _Counter:
    def initial(self) -> int:
        return 0

    def apply(self, state: int, event: Any) -> int:
        return state + event.delta if isinstance(event, CounterAdded) else int(event.value)

    def decide(self, state: int, op: str, args: tuple[Any, ...]) -> tuple[list[Any], Any]:
        if op == "get":
            return [], state
        if op == "add":
            (delta,) = args
            if type(delta) is not int:
                raise ConfigurationError(f"a counter adds ints, got {delta!r}")
            return [CounterAdded(delta)], state + delta
        if op == "cas":
            expected, value = args
            if type(value) is not int:
                raise ConfigurationError(f"a counter holds ints, got {value!r}")
            return ([CounterSet(value)], True) if state == expected else ([], False)
        raise _unknown(op)


class DistributedCounter(Structure):
    """A cluster-wide integer, 0 at first (`Distributed.counter`). Every call is one ask.

    Raises (every method):
        CoordinationError: no answer within the handle's timeout (the operation may or may
            not have happened), or the write failed.
    """

    _kind = "counter"

    async def get(self) -> int:
        """The current value."""
        value: int = await self._call("get")
        return value

    async def add(self, delta: int) -> int:
        """Add ``delta`` (an int, may be negative); return the new value.

        Raises:
            CoordinationError: also when ``delta`` is not an int.
        """
        value: int = await self._call("add", delta)
        return value

    async def increment(self) -> int:
        """Add 1; return the new value."""
        return await self.add(1)

    async def decrement(self) -> int:
        """Subtract 1; return the new value."""
        return await self.add(-1)

    async def compare_and_set(self, expected: int, value: int) -> bool:
        """Set ``value`` if the counter is ``expected``; return whether it did."""
        done: bool = await self._call("cas", expected, value)
        return done


# -- map -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MapPut:
    key: Any
    value: Any


@dataclass(frozen=True, slots=True)
class MapRemoved:
    key: Any


class _Map:
    def initial(self) -> dict[Any, Any]:
        return {}

    def apply(self, state: dict[Any, Any], event: Any) -> dict[Any, Any]:
        if isinstance(event, MapPut):
            state[event.key] = event.value
        else:
            state.pop(event.key, None)
        return state

    def decide(
        self, state: dict[Any, Any], op: str, args: tuple[Any, ...]
    ) -> tuple[list[Any], Any]:
        if op == "items":
            return [], dict(state)
        if op == "size":
            return [], len(state)
        key = args[0]
        found = (True, state[key]) if key in state else _MISSING
        if op == "get":
            return [], found
        if op == "put":
            return [MapPut(key, args[1])], found
        if op == "remove":
            return ([MapRemoved(key)] if found[0] else []), found
        raise _unknown(op)


class DistributedMap(Structure):
    """A cluster-wide dict (`Distributed.map`). Keys and values must be serializable (with
    the default msgpack serializer: builtins, dataclasses, enums; keys hashable).

    The whole map is one entity: fine for up to some 10,000s of entries; shard bigger data
    over many maps (``map(f"users-{hash(k) % 64}")``).

    Raises (every method):
        CoordinationError: no answer within the handle's timeout (the operation may or may
            not have happened), or the write failed.
    """

    _kind = "map"

    async def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        found, value = await self._call("get", key)
        return value if found else default

    async def put(self, key: Any, value: Any) -> Any:
        """Set ``key`` to ``value``; return the previous value (None if there was none)."""
        _, previous = await self._call("put", key, value)
        return previous

    async def remove(self, key: Any) -> Any:
        """Remove ``key``; return its value (None if it was absent)."""
        _, previous = await self._call("remove", key)
        return previous

    async def contains(self, key: Any) -> bool:
        found, _ = await self._call("get", key)
        return bool(found)

    async def size(self) -> int:
        count: int = await self._call("size")
        return count

    async def items(self) -> dict[Any, Any]:
        """A copy of the whole map."""
        items: dict[Any, Any] = await self._call("items")
        return items


# -- set -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetAdded:
    member: Any


@dataclass(frozen=True, slots=True)
class SetRemoved:
    member: Any


class _Set:
    def initial(self) -> set[Any]:
        return set()

    def apply(self, state: set[Any], event: Any) -> set[Any]:
        if isinstance(event, SetAdded):
            state.add(event.member)
        else:
            state.discard(event.member)
        return state

    def decide(self, state: set[Any], op: str, args: tuple[Any, ...]) -> tuple[list[Any], Any]:
        if op == "members":
            return [], frozenset(state)
        if op == "size":
            return [], len(state)
        member = args[0]
        if op == "contains":
            return [], member in state
        if op == "add":
            return ([], False) if member in state else ([SetAdded(member)], True)
        if op == "remove":
            return ([SetRemoved(member)], True) if member in state else ([], False)
        raise _unknown(op)


class DistributedSet(Structure):
    """A cluster-wide set (`Distributed.set`); members must be hashable and serializable.

    Raises (every method):
        CoordinationError: no answer within the handle's timeout (the operation may or may
            not have happened), or the write failed.
    """

    _kind = "set"

    async def add(self, member: Any) -> bool:
        """Add ``member``; return whether it was new."""
        added: bool = await self._call("add", member)
        return added

    async def remove(self, member: Any) -> bool:
        """Remove ``member``; return whether it was there."""
        removed: bool = await self._call("remove", member)
        return removed

    async def contains(self, member: Any) -> bool:
        present: bool = await self._call("contains", member)
        return present

    async def size(self) -> int:
        count: int = await self._call("size")
        return count

    async def members(self) -> frozenset[Any]:
        """A copy of the whole set."""
        members: frozenset[Any] = await self._call("members")
        return members


#: The kinds by structure, for `Distributed` (the queue's lives in ``queue.py``).
COUNTER: Callable[[], DataKind[Any]] = _Counter
MAP: Callable[[], DataKind[Any]] = _Map
SET: Callable[[], DataKind[Any]] = _Set
