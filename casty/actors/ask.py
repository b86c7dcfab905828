"""The machinery of ``ask``: reply promises and their timeouts.

Ask timeouts are kept in 10 ms buckets with one clock callback for the earliest bucket, instead of
one event-loop timer per ask: a loop timer costs a Python object, a heap push with Python-level
comparisons and a cancellation per ask, which measured about a third of a local ask's cost. A
bucket is a set, so an answered ask leaves it in O(1). This is a hashed, sorted timing wheel
(Varghese & Lauck, "Hashed and Hierarchical Timing Wheels", SOSP 1987) kept as a heap of bucket
numbers; timeouts fire never early and at most one bucket late: 10 ms, or about 1/1024 of a
timeout longer than 10.24 s (so long timeouts leave few empty buckets behind).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, final

from casty.actors.events import DeadLetterReason
from casty.actors.ref import ActorRef
from casty.clock import SystemClock
from casty.errors import AskTimeout

if TYPE_CHECKING:
    from casty.actors.system import ActorSystem
    from casty.clock import Cancellable, Clock

__all__: list[str] = []

#: Buckets per second of the ask-timeout wheel (10 ms resolution).
TICKS_PER_SECOND = 100
# Absorbs float error in deadline * TICKS_PER_SECOND (1e-6 of a tick is 10 ns).
_EPSILON = 1e-6
# Timeouts up to this many seconds get 10 ms buckets; longer ones about timeout / 1024.
_FINE_TIMEOUT = 1024 / TICKS_PER_SECOND


@final
class PromiseRef(ActorRef[Any]):
    """The ``reply_to`` of an ask: the first message told to it completes the future.

    Its address (``/temp/$<n>``) is assigned, and made resolvable, only when something reads
    it (a serializer writing the ref for a remote reply); most asks never pay for it.
    """

    __slots__ = ("_bucket", "_future", "_id", "_path", "_system", "_target", "_timeout")

    def __init__(
        self,
        system: ActorSystem,
        future: asyncio.Future[Any],
        target: ActorRef[Any] | None = None,
        timeout: float = 0.0,
    ) -> None:
        self._system = system
        self._future = future
        self._id = 0
        self._path = ""  # "/temp/$<_id>" once `_id` is assigned
        self._bucket: set[PromiseRef] | None = None
        self._target = target  # named by the timeout error
        self._timeout = timeout

    @property
    def path(self) -> str:
        if not self._id:
            self._id = next(self._system._temp_ids)
            self._path = f"/temp/${self._id}"
            if not self._future.done():
                self._system._temp[self._path] = self
        return self._path

    @property
    def address(self) -> str:
        return self._system._address_prefix + self.path

    def tell(self, message: Any) -> None:
        future = self._future
        if future.done():
            self._system._dead_letter(message, self, DeadLetterReason.LATE_ASK_REPLY)
        else:
            future.set_result(message)

    def fail(self, exc: BaseException) -> None:
        """Complete the ask with ``exc`` unless it is already complete."""
        if not self._future.done():
            self._future.set_exception(exc)

    def release(self) -> None:
        """The ask is over: leave the timeout wheel and the address table."""
        bucket = self._bucket
        if bucket is not None:
            bucket.discard(self)
            self._bucket = None
        if self._id:
            self._system._temp.pop(self._path, None)

    def expire(self) -> None:
        self._bucket = None
        if not self._future.done():
            target = self._target
            where = "" if target is None else f" from {target.path}"
            self._future.set_exception(AskTimeout(f"no reply{where} within {self._timeout} s"))

    # The address is unique and `resolve` returns this very object, so identity is equality;
    # object's C-level slots keep set membership (the timeout wheel) cheap.
    __eq__ = object.__eq__
    __hash__ = object.__hash__


def request_fields(message: object) -> list[object]:
    """The values where an ask's reply ref travels in ``message``: its top-level fields
    (dataclass fields, tuple items or instance attributes), then those of the request it
    wraps, when its class names that attribute in ``__wrapped_request__`` (a `ShardEnvelope`
    wraps its ``message``)."""
    cls = type(message)
    fields = getattr(cls, "__dataclass_fields__", None)
    values: list[object]
    if fields is not None:
        values = [getattr(message, name, None) for name in fields]
    elif isinstance(message, tuple):
        values = list(message)
    else:
        values = list(getattr(message, "__dict__", {}).values())
    wrapped = getattr(cls, "__wrapped_request__", None)
    if type(wrapped) is str:
        values += request_fields(getattr(message, wrapped, None))
    return values


def reply_promises(message: object) -> Iterator[PromiseRef]:
    """The ask promises among `request_fields` of ``message``: the asks of this system that
    wait for a reply to it."""
    for value in request_fields(message):
        if type(value) is PromiseRef:
            yield value


@final
class AskTimeouts:
    """Expires promises on a `Clock`, in 10 ms buckets (see the module docstring)."""

    __slots__ = ("_armed", "_buckets", "_clock", "_handle", "_now", "_ticks")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        # SystemClock.monotonic is time.monotonic; calling the builtin spares a Python frame.
        self._now = time.monotonic if type(clock) is SystemClock else clock.monotonic
        self._buckets: dict[int, set[PromiseRef]] = {}
        self._ticks: list[int] = []  # heap of bucket numbers
        self._armed = 0  # the bucket number the clock callback is set for; 0: none
        self._handle: Cancellable | None = None

    def add(self, promise: PromiseRef, timeout: float) -> None:
        """Expire ``promise`` once ``timeout`` seconds have passed (unless released first)."""
        deadline = self._now() + timeout
        tick = math.ceil(deadline * TICKS_PER_SECOND - _EPSILON)
        if timeout > _FINE_TIMEOUT:
            # Long timeouts share coarser buckets (about 1/1024 of the timeout), so the empty
            # buckets answered asks leave behind stay few until their deadline passes.
            step = int(timeout * TICKS_PER_SECOND) >> 10
            tick = -(-tick // step) * step
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = set()
            heapq.heappush(self._ticks, tick)
            if not self._armed or tick < self._armed:
                self._arm(tick)
        bucket.add(promise)
        promise._bucket = bucket

    def _arm(self, tick: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = tick
        delay = tick / TICKS_PER_SECOND - self._clock.monotonic()
        self._handle = self._clock.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = 0
        now = math.floor(self._clock.monotonic() * TICKS_PER_SECOND + _EPSILON)
        ticks = self._ticks
        buckets = self._buckets
        while ticks and ticks[0] <= now:
            for promise in buckets.pop(heapq.heappop(ticks)):
                promise.expire()
        # Answered asks leave their buckets empty: drop those ahead of the first bucket still
        # waiting, so the clock callback is set for a timeout that can happen (asks answered
        # at a steady rate would otherwise wake the loop every bucket for nothing).
        while ticks and not buckets[ticks[0]]:
            del buckets[heapq.heappop(ticks)]
        if ticks:
            self._arm(ticks[0])

    def fail_all(self, exc: BaseException) -> None:
        """Fail every pending ask with ``exc`` and drop the clock callback (at shutdown)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._armed = 0
        buckets = self._buckets
        self._buckets = {}
        self._ticks = []
        for bucket in buckets.values():
            for promise in bucket:
                promise._bucket = None
                promise.fail(exc)
