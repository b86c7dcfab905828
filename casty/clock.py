"""Time, injected: every timer, timeout and heartbeat in Casty reads a `Clock`.

`SystemClock` is the real one, driven by the running asyncio event loop. Tests hand
`casty.testing.ManualClock` to the actor system instead and advance virtual time, so timer,
backoff, ask-timeout and failure-detector tests never sleep (trio's ``MockClock`` is the model).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, final

__all__ = ["Cancellable", "Clock", "SystemClock"]


class Cancellable(Protocol):
    """A scheduled callback that can still be called off (`asyncio.TimerHandle` is one)."""

    def cancel(self) -> None:
        """Prevent the callback from running; idempotent, harmless after it ran."""

    def cancelled(self) -> bool:
        """Whether `cancel` was called."""


class Clock(ABC):
    """A source of time and delayed callbacks.

    All methods must be called from the event loop's thread. Times are seconds as ``float``.

    Implementing: every abstract method. `monotonic` never goes backwards; `call_later` runs its
    callbacks in deadline order (ties in scheduling order), never before ``monotonic()`` has
    reached the deadline.
    """

    @abstractmethod
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences are meaningful."""

    @abstractmethod
    def time_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch (for timestamps, not for timeouts)."""

    @abstractmethod
    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
        """Run ``callback(*args)`` once, ``delay`` seconds from now (a negative delay means now).

        The callback runs on the event loop, outside any task; an exception it raises goes to the
        loop's exception handler.
        """

    @abstractmethod
    async def sleep(self, delay: float) -> None:
        """Suspend the calling task for ``delay`` seconds; cancellation ends the wait early."""


@final
class SystemClock(Clock):
    """The real clock: `time.monotonic`, `time.time_ns` and the running event loop's timers."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)
