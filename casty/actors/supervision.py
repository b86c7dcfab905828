"""Supervisor strategies: what happens to an actor whose handler raised.

Akka Typed's model: a failure is handled where it happens, by the strategy the actor's behavior
was wrapped in with `Behaviors.supervise`. An actor without a matching strategy stops. See
`SupervisorStrategy` for the directives.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import Enum

from casty.errors import ConfigurationError

__all__ = ["Backoff", "Directive", "SupervisorStrategy"]


class Directive(Enum):
    """What a supervisor does with a failed actor."""

    RESTART = "restart"
    RESUME = "resume"
    STOP = "stop"
    ESCALATE = "escalate"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between restarts, with jitter.

    The n-th restart inside the strategy's window (n counting from 0) waits
    ``min(max_backoff, min_backoff * 2**n) * (1 + random_factor * U)`` seconds with ``U`` uniform
    in [0, 1): the "exponential backoff and jitter" scheme of Akka's ``BackoffSupervisor`` and of
    Brooker, "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015). While waiting, the
    actor's children are already stopped and its mailbox keeps filling (bounded mailboxes still
    apply).

    Attributes:
        min_backoff: seconds before the first restart, > 0.
        max_backoff: cap in seconds, >= ``min_backoff``.
        random_factor: extra random share of the delay, >= 0 (0 makes delays exact).
    """

    min_backoff: float
    max_backoff: float
    random_factor: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.min_backoff <= self.max_backoff) or not math.isfinite(self.max_backoff):
            raise ConfigurationError(
                f"Backoff needs 0 < min_backoff <= max_backoff < inf, got "
                f"{self.min_backoff!r}, {self.max_backoff!r}"
            )
        if not (0 <= self.random_factor < math.inf):
            raise ConfigurationError(f"random_factor must be >= 0, got {self.random_factor!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (0-based)."""
        base = min(self.max_backoff, self.min_backoff * 2.0 ** min(attempt, 64))
        return base * (1.0 + self.random_factor * random.random())


ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class SupervisorStrategy:
    """How an actor reacts when its handler (or setup) raises an exception of type ``on``.

    Build one with the class methods:

    - `restart`: throw the actor's state away and start its supervised behavior again
      (``Behaviors.setup`` runs again). The children are stopped first, then ``PreRestart`` goes
      to the failed behavior; timers are cancelled; the mailbox is kept; stashed messages become
      dead letters. The failing message is not retried. More than ``max_restarts`` restarts
      within ``within`` seconds stop the actor instead.
    - `resume`: keep the current behavior and state and go on with the next message (a failure
      during setup cannot be resumed and stops the actor).
    - `stop`: stop the actor (the default when no strategy matches).
    - `escalate`: stop the actor and fail its parent with the same exception, which the parent's
      own strategy then handles as if its handler had raised it. The top-level guardian logs an
      escalated failure and carries on, so nothing reaches the system itself.

    Nested ``Behaviors.supervise`` wrappers are tried innermost first; the first whose ``on``
    matches decides. ``on`` defaults to `Exception`, so a ``CancelledError`` a handler raises on
    its own (not from a stop) stops the actor unless a strategy names it. Every failure is
    logged at ERROR with its traceback on the ``casty.actors`` logger. The failing message is
    not a dead letter: it was delivered.
    """

    directive: Directive
    on: tuple[type[BaseException], ...] = (Exception,)
    max_restarts: int | None = None
    within: float | None = None
    backoff: Backoff | None = None

    @classmethod
    def restart(
        cls,
        *,
        max_restarts: int | None = None,
        within: float | None = None,
        backoff: Backoff | None = None,
        on: ExceptionTypes = Exception,
    ) -> SupervisorStrategy:
        """Restart on failure.

        Args:
            max_restarts: restarts allowed within the window (>= 0); ``None`` for no limit. The
                failure that would exceed it stops the actor.
            within: the window in seconds (> 0); ``None`` counts every restart since spawn.
            backoff: wait this long before each restart; ``None`` restarts at once.
            on: the exception types this strategy handles.

        Raises:
            ConfigurationError: a negative limit or a non-positive window.
        """
        if max_restarts is not None and max_restarts < 0:
            raise ConfigurationError(f"max_restarts must be >= 0, got {max_restarts!r}")
        if within is not None and not within > 0:
            raise ConfigurationError(f"within must be > 0 seconds, got {within!r}")
        return cls(Directive.RESTART, _types(on), max_restarts, within, backoff)

    @classmethod
    def resume(cls, *, on: ExceptionTypes = Exception) -> SupervisorStrategy:
        """Ignore the failure and process the next message with the same behavior."""
        return cls(Directive.RESUME, _types(on))

    @classmethod
    def stop(cls, *, on: ExceptionTypes = Exception) -> SupervisorStrategy:
        """Stop the actor (its children first, then ``PostStop``)."""
        return cls(Directive.STOP, _types(on))

    @classmethod
    def escalate(cls, *, on: ExceptionTypes = Exception) -> SupervisorStrategy:
        """Stop the actor and fail its parent with the same exception."""
        return cls(Directive.ESCALATE, _types(on))

    def handles(self, exc: BaseException) -> bool:
        """Whether ``exc`` is one of the types in ``on``."""
        return isinstance(exc, self.on)


def _types(on: ExceptionTypes) -> tuple[type[BaseException], ...]:
    types = on if isinstance(on, tuple) else (on,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise ConfigurationError(f"on= takes exception types, got {t!r}")
    return types
