"""`ManualClock`: virtual time for tests, advanced explicitly, so timing tests never sleep."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any, final

from casty.clock import Clock
from casty.errors import ConfigurationError

__all__ = ["ManualClock"]

#: Event-loop turns `ManualClock.advance` grants at least before and after each deadline, so work
#: woken by a callback (an actor's mailbox run, a task's wake-up) gets to run.
_MIN_SETTLE_TURNS = 3
#: Upper bound on the turns spent waiting for the loop's ready queue to empty.
_MAX_SETTLE_TURNS = 1000

_PENDING, _CANCELLED, _RAN = 0, 1, 2


@final
class _ManualTimer:
    __slots__ = ("_args", "_callback", "_clock", "_seq", "_state", "when")

    def __init__(
        self,
        clock: ManualClock,
        when: float,
        seq: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
    ) -> None:
        self._clock = clock
        self.when = when
        self._seq = seq
        self._callback = callback
        self._args = args
        self._state = _PENDING

    def __lt__(self, other: _ManualTimer) -> bool:
        return (self.when, self._seq) < (other.when, other._seq)

    def cancel(self) -> None:
        if self._state == _PENDING:
            self._state = _CANCELLED
            self._clock._live -= 1

    def cancelled(self) -> bool:
        return self._state == _CANCELLED


@final
class ManualClock(Clock):
    """A `Clock` whose time moves only when a test calls `advance`.

    Example::

        clock = ManualClock()
        async with ActorSystem(name="t", clock=clock) as system:
            ...
            await clock.advance(5.0)   # fires every timer due within the next 5 s

    Args:
        start: the initial `monotonic` reading in seconds.
        wall_ms: the `time_ms` reading at ``start``; it moves with `advance`.
    """

    def __init__(self, start: float = 0.0, *, wall_ms: int = 1_700_000_000_000) -> None:
        self._now = float(start)
        self._start = float(start)
        self._wall_ms = wall_ms
        self._heap: list[_ManualTimer] = []
        self._seq = itertools.count()
        self._live = 0

    def monotonic(self) -> float:
        return self._now

    def time_ms(self) -> int:
        return self._wall_ms + round((self._now - self._start) * 1000)

    @property
    def pending(self) -> int:
        """How many callbacks are scheduled and not cancelled (0 when none)."""
        return self._live

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> _ManualTimer:
        timer = _ManualTimer(self, self._now + max(delay, 0.0), next(self._seq), callback, args)
        heapq.heappush(self._heap, timer)
        self._live += 1
        return timer

    async def sleep(self, delay: float) -> None:
        """Suspend until `advance` has moved time ``delay`` seconds past now.

        A delay <= 0 yields to the event loop once and returns.
        """
        if delay <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(delay, _wake, future)
        try:
            await future
        finally:
            timer.cancel()

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every callback that falls due, in order.

        Before each deadline and at the end, the event loop gets turns until its ready queue is
        empty (bounded), so actors and tasks woken by a callback run and may schedule further
        callbacks, which also fire if they fall within the advanced span. During a callback,
        `monotonic` reads that callback's deadline.

        Raises:
            ConfigurationError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ConfigurationError(f"cannot advance a clock backwards ({seconds} s)")
        target = self._now + seconds
        await _settle()
        heap = self._heap
        while heap and heap[0].when <= target:
            timer = heapq.heappop(heap)
            if timer._state != _PENDING:
                continue
            self._now = max(self._now, timer.when)
            timer._state = _RAN
            self._live -= 1
            try:
                timer._callback(*timer._args)
            except Exception as exc:
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "ManualClock callback failed", "exception": exc}
                )
            await _settle()
        self._now = target
        await _settle()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _settle() -> None:
    """Give the loop turns until its ready queue is empty (checked where the loop exposes it)."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # CPython's loop; other loops get the minimum turns
    for turn in range(_MAX_SETTLE_TURNS):
        if turn >= _MIN_SETTLE_TURNS and not ready:
            return
        await asyncio.sleep(0)
