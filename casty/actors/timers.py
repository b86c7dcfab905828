"""`TimerScheduler`: keyed single and periodic timers owned by one actor."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from casty.errors import ConfigurationError

if TYPE_CHECKING:
    from casty.actors.cell import ActorCell
    from casty.clock import Cancellable

__all__ = ["TimerScheduler"]

M = TypeVar("M")


@final
class _Timer:
    """One started timer; its identity tells a live timer's message from a stale one."""

    __slots__ = ("handle", "interval", "key", "message", "scheduler")

    def __init__(
        self, scheduler: TimerScheduler[Any], key: object, message: object, interval: float | None
    ) -> None:
        self.scheduler = scheduler
        self.key = key
        self.message = message
        self.interval = interval
        self.handle: Cancellable | None = None

    def fire(self) -> None:
        scheduler = self.scheduler
        if scheduler._timers.get(self.key) is not self:
            return
        cell = scheduler._cell
        if self.interval is not None:
            self.handle = cell._system._clock.call_later(self.interval, self.fire)
        cell._deliver_timer(self)

    def accept(self) -> object:
        """Called when the timer's envelope reaches the head of the mailbox: the message to
        deliver, or ``None`` when the timer was cancelled or replaced meanwhile."""
        timers = self.scheduler._timers
        if timers.get(self.key) is not self:
            return None
        if self.interval is None:
            del timers[self.key]
        return self.message


class TimerScheduler(Generic[M]):
    """Timers that send messages to their actor, obtained through `Behaviors.with_timers`.

    Each timer has a key; starting a timer with a key in use replaces the old one, and a message
    of a cancelled or replaced timer that is already in the mailbox is discarded, never handled.
    Timers read the actor system's `Clock`, so `casty.testing.ManualClock` drives them in tests.
    All timers are cancelled when the actor stops or restarts, and starting one while it stops
    or restarts (in a `PreRestart` or `PostStop` signal handler, say) does nothing: a restarted
    actor starts with no timers but those its setup starts. Timer messages go through the
    mailbox like any message (a full bounded mailbox drops them as dead letters).

    Only the owning actor may use its scheduler (from its handlers and setup).
    """

    __slots__ = ("_cell", "_timers")

    def __init__(self, cell: ActorCell[M]) -> None:
        self._cell = cell
        self._timers: dict[object, _Timer] = {}

    def start_single_timer(self, key: object, message: M, delay: float) -> None:
        """Send ``message`` once, ``delay`` seconds from now (>= 0), replacing timer ``key``.

        Raises:
            ConfigurationError: ``delay`` is negative or not finite.
        """
        if not (0 <= delay < math.inf):
            raise ConfigurationError(f"timer delay must be finite and >= 0, got {delay!r}")
        self._start(key, message, delay, None)

    def start_periodic_timer(self, key: object, message: M, interval: float) -> None:
        """Send ``message`` every ``interval`` seconds (> 0), first after one interval.

        Each firing schedules the next one ``interval`` seconds later (fixed delay).

        Raises:
            ConfigurationError: ``interval`` is not positive and finite.
        """
        if not (0 < interval < math.inf):
            raise ConfigurationError(f"timer interval must be finite and > 0, got {interval!r}")
        self._start(key, message, interval, interval)

    def is_active(self, key: object) -> bool:
        """Whether timer ``key`` is started and not yet cancelled or (single) delivered."""
        return key in self._timers

    def cancel(self, key: object) -> None:
        """Cancel timer ``key``; its message, even if already queued, is not handled.

        Idempotent: an unknown key does nothing.
        """
        timer = self._timers.pop(key, None)
        if timer is not None and timer.handle is not None:
            timer.handle.cancel()

    def cancel_all(self) -> None:
        """Cancel every timer of this actor; idempotent."""
        timers = self._timers
        self._timers = {}
        for timer in timers.values():
            if timer.handle is not None:
                timer.handle.cancel()

    def _start(self, key: object, message: object, delay: float, interval: float | None) -> None:
        self.cancel(key)
        if self._cell._ending():
            # The timers of a restarting or stopping actor are gone; a new one would outlive
            # its incarnation (a restart cancels them before PreRestart handlers run).
            return
        timer = _Timer(self, key, message, interval)
        self._timers[key] = timer
        timer.handle = self._cell._system._clock.call_later(delay, timer.fire)
