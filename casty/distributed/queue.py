"""The distributed work queue: put, reserve with a visibility timeout, ack (at least once).

A reserved item stays in the queue, invisible to other consumers for ``visibility`` seconds;
`DistributedQueue.ack` removes it, `DistributedQueue.release` makes it visible again at once.
A consumer that crashes never acks, so its item is handed out again once the visibility
timeout has passed: no item is lost, and an item may be processed more than once (make the
work idempotent, or check `Reservation.delivery`).

Each reservation gets a *delivery* number, strictly increasing per queue, that acts as the
fencing token of the reservation: an ack or release names it, and is refused once the item
was reserved again by someone else.

Deadlines are measured on the clock of the node that runs the queue's entity: they are taken
when the reservation is applied, and again when the entity recovers (after a failover or a
restart every reservation recovered from the journal gets a fresh full ``visibility``, so an
item is never redelivered early, at worst late by one timeout).

Reserving scans the unacked items in id order (the oldest visible one wins): O(items in
flight) per reserve.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from casty.distributed.data import Structure
from casty.distributed.lease import check_seconds
from casty.errors import ConfigurationError, LeaseExpired

__all__ = [
    "DistributedQueue",
    "QueueAcked",
    "QueuePut",
    "QueueReleased",
    "QueueReserved",
    "Reservation",
    "queue_kind",
]


@dataclass(frozen=True, slots=True)
class QueuePut:
    item_id: int
    item: Any


@dataclass(frozen=True, slots=True)
class QueueReserved:
    item_id: int
    delivery: int
    visibility: float


@dataclass(frozen=True, slots=True)
class QueueAcked:
    item_id: int


@dataclass(frozen=True, slots=True)
class QueueReleased:
    item_id: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """An item handed to a consumer until ``ack`` / ``release`` or its visibility timeout.

    Attributes:
        item_id: the item's number in its queue (strictly increasing by `put` order).
        delivery: this reservation's number (strictly increasing across the queue's
            reservations: a fencing token); an item redelivered gets a larger one.
        item: the value given to `DistributedQueue.put`.
    """

    item_id: int
    delivery: int
    item: Any


@dataclass(slots=True)
class _QueueState:
    next_id: int = 1
    next_delivery: int = 1
    items: dict[int, Any] = field(default_factory=dict)
    # item id -> (delivery, deadline on this node's monotonic clock)
    reserved: dict[int, tuple[int, float]] = field(default_factory=dict)


class _Queue:
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def initial(self) -> _QueueState:
        return _QueueState()

    def apply(self, state: _QueueState, event: Any) -> _QueueState:
        if isinstance(event, QueuePut):
            state.items[event.item_id] = event.item
            state.next_id = event.item_id + 1
        elif isinstance(event, QueueReserved):
            deadline = self._now() + event.visibility
            state.reserved[event.item_id] = (event.delivery, deadline)
            state.next_delivery = event.delivery + 1
        elif isinstance(event, QueueAcked):
            state.items.pop(event.item_id, None)
            state.reserved.pop(event.item_id, None)
        elif isinstance(event, QueueReleased):
            state.reserved.pop(event.item_id, None)
        return state

    def decide(self, state: _QueueState, op: str, args: tuple[Any, ...]) -> tuple[list[Any], Any]:
        if op == "put":
            return [QueuePut(state.next_id, args[0])], state.next_id
        if op == "reserve":
            visibility = check_seconds("visibility", args[0])
            now = self._now()
            for item_id, item in state.items.items():
                held = state.reserved.get(item_id)
                if held is None or held[1] <= now:
                    delivery = state.next_delivery
                    event = QueueReserved(item_id, delivery, visibility)
                    return [event], Reservation(item_id, delivery, item)
            return [], None
        if op in ("ack", "release"):
            item_id, delivery = args
            held = state.reserved.get(item_id)
            if held is None or held[0] != delivery:
                return [], False
            return [QueueAcked(item_id) if op == "ack" else QueueReleased(item_id)], True
        if op == "size":
            now = self._now()
            in_flight = sum(1 for _, deadline in state.reserved.values() if deadline > now)
            return [], (len(state.items), in_flight)
        raise ConfigurationError(f"unknown operation {op!r}")


def queue_kind(now: Callable[[], float]) -> Callable[[], _Queue]:
    """The queue's kind for `casty.distributed.data.data_entity`, on the clock ``now``."""
    return lambda: _Queue(now)


class DistributedQueue(Structure):
    """A cluster-wide FIFO work queue with at-least-once delivery (`Distributed.queue`).

    ::

        jobs = system.distributed().queue("jobs")
        await jobs.put({"send": "welcome", "to": 42})
        reservation = await jobs.reserve(wait=5.0, visibility=30.0)
        if reservation is not None:
            await handle(reservation.item)
            await jobs.ack(reservation)

    Items must be serializable (with msgpack: builtins, dataclasses, enums). See the module
    docstring for the reservation semantics.

    Raises (every method):
        CoordinationError: no answer within the handle's timeout (the operation may or may
            not have happened), or the write failed.
    """

    _kind = "queue"

    async def put(self, item: Any) -> int:
        """Append ``item``; return its id (once stored)."""
        item_id: int = await self._call("put", item)
        return item_id

    async def reserve(self, *, wait: float = 0.0, visibility: float = 30.0) -> Reservation | None:
        """Take the oldest visible item for ``visibility`` seconds; None if there was none
        for ``wait`` seconds (polled, from every 10 ms up to every 200 ms).

        Raises:
            ConfigurationError: a bad ``wait`` or ``visibility``.
        """
        check_seconds("wait", wait, zero=True)
        check_seconds("visibility", visibility)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        pause = 0.01
        while True:
            found: Reservation | None = await self._call("reserve", float(visibility))
            if found is not None or loop.time() >= deadline:
                return found
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, 0.2)

    async def ack(self, reservation: Reservation) -> None:
        """Remove the reserved item for good.

        Raises:
            LeaseExpired: the item was reserved again by another consumer (after this
                reservation's visibility timeout) or is gone: the ack is refused.
        """
        if not await self._call("ack", reservation.item_id, reservation.delivery):
            raise LeaseExpired(
                f"queue {self.name!r}: item {reservation.item_id} is no longer reserved by "
                f"delivery {reservation.delivery}"
            )

    async def release(self, reservation: Reservation) -> None:
        """Make the reserved item visible again at once (a negative acknowledgement).

        Raises:
            LeaseExpired: as for `ack`.
        """
        if not await self._call("release", reservation.item_id, reservation.delivery):
            raise LeaseExpired(
                f"queue {self.name!r}: item {reservation.item_id} is no longer reserved by "
                f"delivery {reservation.delivery}"
            )

    async def size(self) -> tuple[int, int]:
        """``(unacked items, items reserved now)``; the first counts both kinds."""
        total, in_flight = await self._call("size")
        return int(total), int(in_flight)
