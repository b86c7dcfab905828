"""Behaviors as values: `Behavior` and the `Behaviors` factory (Akka Typed's family).

An actor is a behavior: a handler called with each message, returning the behavior for the next
one. State lives in closures, so "changing state" means returning a new behavior::

    def counter(n: int = 0) -> Behavior[Increment | Get]:
        async def receive(ctx: ActorContext[Increment | Get], msg: Increment | Get):
            match msg:
                case Increment():
                    return counter(n + 1)
                case Get(reply_to):
                    reply_to.tell(n)
                    return Behaviors.same()
        return Behaviors.receive(receive)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from casty.actors.signals import Signal
from casty.actors.supervision import SupervisorStrategy
from casty.errors import ConfigurationError

if TYPE_CHECKING:
    from casty.actors.context import ActorContext
    from casty.actors.stash import StashBuffer
    from casty.actors.timers import TimerScheduler
    from casty.persistence import event_sourced as _event_sourced
    from casty.persistence import persisted as _persisted
    from casty.sharding import sharded as _sharded

__all__ = ["Behavior", "Behaviors"]

M = TypeVar("M")

# Handlers may be `async def` (the usual case) or plain functions returning a behavior.
Handler = Callable[["ActorContext[M]", M], "Behavior[M] | Awaitable[Behavior[M]]"]
SignalHandler = Callable[["ActorContext[M]", Signal], "Behavior[M] | Awaitable[Behavior[M]] | None"]
Factory = Callable[["ActorContext[M]"], "Behavior[M] | Awaitable[Behavior[M]]"]


class Behavior(Generic[M]):
    """How an actor handles its next message of type ``M``. Build one with `Behaviors`.

    Behaviors are immutable values: one behavior may be spawned any number of times, and each
    actor gets its own state by way of `Behaviors.setup`.
    """

    __slots__ = ()


@final
class _Receive(Behavior[M]):
    __slots__ = ("handler", "on_signal")

    def __init__(self, handler: Handler[M], on_signal: SignalHandler[M] | None) -> None:
        self.handler = handler
        self.on_signal = on_signal


@final
class _Same(Behavior[Any]):
    __slots__ = ()


@final
class _Unhandled(Behavior[Any]):
    __slots__ = ()


@final
class _Stopped(Behavior[Any]):
    __slots__ = ("post_stop",)

    def __init__(self, post_stop: Callable[[], object] | None) -> None:
        self.post_stop = post_stop


@final
class _Setup(Behavior[M]):
    __slots__ = ("factory",)

    def __init__(self, factory: Factory[M]) -> None:
        self.factory = factory


@final
class _Supervise(Behavior[M]):
    __slots__ = ("behavior", "strategy")

    def __init__(self, behavior: Behavior[M], strategy: SupervisorStrategy) -> None:
        self.behavior = behavior
        self.strategy = strategy


@final
class _WithTimers(Behavior[M]):
    __slots__ = ("factory",)

    def __init__(
        self, factory: Callable[[TimerScheduler[M]], Behavior[M] | Awaitable[Behavior[M]]]
    ) -> None:
        self.factory = factory


@final
class _WithStash(Behavior[M]):
    __slots__ = ("capacity", "factory")

    def __init__(
        self,
        capacity: int,
        factory: Callable[[StashBuffer[M]], Behavior[M] | Awaitable[Behavior[M]]],
    ) -> None:
        self.capacity = capacity
        self.factory = factory


def _keep(ctx: object, message: object) -> Behavior[Any]:
    return _SAME


def _decline(ctx: object, message: object) -> Behavior[Any]:
    return _UNHANDLED


_SAME: Behavior[Any] = _Same()
_UNHANDLED: Behavior[Any] = _Unhandled()
_IGNORE: _Receive[Any] = _Receive(_keep, None)
_EMPTY: _Receive[Any] = _Receive(_decline, None)
_STOPPED: Behavior[Any] = _Stopped(None)


class _FromPersistence:
    """A `Behaviors` attribute that is the function of the same name in casty.persistence.

    The first access imports casty.persistence and puts the function itself on the class, so
    later calls cost nothing extra (``persisted`` runs once per command) and ``help()`` shows
    the real signature and docstring.
    """

    __slots__ = ("_name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, instance: object, owner: type) -> Any:
        import casty.persistence

        function = getattr(casty.persistence, self._name)
        setattr(owner, self._name, staticmethod(function))
        return function


class _FromSharding(_FromPersistence):
    """A `Behaviors` attribute that is the function of the same name in casty.sharding."""

    __slots__ = ()

    def __get__(self, instance: object, owner: type) -> Any:
        import casty.sharding

        function = getattr(casty.sharding, self._name)
        setattr(owner, self._name, staticmethod(function))
        return function


class Behaviors:
    """Constructors of behaviors. Every method is static and returns a `Behavior`."""

    __slots__ = ()

    @staticmethod
    def receive(handler: Handler[M], on_signal: SignalHandler[M] | None = None) -> Behavior[M]:
        """Handle each message with ``handler(ctx, msg)``, which returns the next behavior.

        ``handler`` is usually ``async def``; a plain function returning a behavior also works
        and is a little faster. A handler runs its first step inline on the event loop, outside
        any asyncio task; if it really suspends (awaits something not ready), the actor moves to
        a task until its mailbox is empty again, and messages keep their order. So
        ``asyncio.current_task()`` is ``None`` until the first real suspension: APIs that need a
        task (``asyncio.timeout``, ``asyncio.TaskGroup``) work after an ``await
        asyncio.sleep(0)``.

        Returning `Behaviors.same` keeps the behavior, `Behaviors.unhandled` makes the message
        a dead letter, `Behaviors.stopped` stops the actor; any other behavior replaces the
        current one. Returning anything that is not a behavior is a failure, handled by
        supervision. Death-watch notices (`Terminated`) arrive here as messages.

        Args:
            handler: ``(ctx, msg) -> Behavior``, sync or async.
            on_signal: optional ``(ctx, signal) -> Behavior | None``, sync or async, called with
                `PostStop` and `PreRestart`; its result is ignored and its exceptions logged.
        """
        return _Receive(handler, on_signal)

    @staticmethod
    def setup(factory: Factory[M]) -> Behavior[M]:
        """Run ``factory(ctx)`` when the actor starts (and again on every restart).

        The factory (sync or async) returns the behavior to run; it may spawn children, start
        timers and create per-actor state. An exception it raises is a failure of the actor.
        """
        return _Setup(factory)

    @staticmethod
    def same() -> Behavior[Any]:
        """Keep the current behavior (a shared singleton; returning it allocates nothing)."""
        return _SAME

    @staticmethod
    def unhandled() -> Behavior[Any]:
        """Keep the current behavior and publish the message as a ``DeadLetter`` ("unhandled").

        A pending ``ask`` whose reply ref is a field of the message fails with
        `UnhandledMessage`.
        """
        return _UNHANDLED

    @staticmethod
    def stopped(post_stop: Callable[[], object] | None = None) -> Behavior[Any]:
        """Stop the actor after the current message.

        Its children stop first, then ``PostStop`` goes to the current behavior, then
        ``post_stop()`` (sync or async; exceptions are logged) runs. Messages still in the
        mailbox become dead letters ("recipient stopped").
        """
        return _STOPPED if post_stop is None else _Stopped(post_stop)

    @staticmethod
    def ignore() -> Behavior[Any]:
        """Accept every message and drop it silently."""
        return _IGNORE

    @staticmethod
    def empty() -> Behavior[Any]:
        """Treat every message as unhandled (each becomes a dead letter)."""
        return _EMPTY

    @staticmethod
    def supervise(behavior: Behavior[M], strategy: SupervisorStrategy) -> Behavior[M]:
        """Run ``behavior`` under ``strategy`` (see `SupervisorStrategy`).

        A restart starts ``behavior`` again from scratch. Wrap the behavior an actor is spawned
        with (or the one a setup returns); a ``supervise`` returned later by a handler adds its
        strategy unless an equal strategy is already in force.
        """
        if not isinstance(strategy, SupervisorStrategy):
            raise ConfigurationError(f"expected a SupervisorStrategy, got {strategy!r}")
        return _Supervise(behavior, strategy)

    @staticmethod
    def with_timers(
        factory: Callable[[TimerScheduler[M]], Behavior[M] | Awaitable[Behavior[M]]],
    ) -> Behavior[M]:
        """Give ``factory`` the actor's `TimerScheduler`; its timers die with the actor.

        A restart cancels every timer before the factory runs again.
        """
        return _WithTimers(factory)

    @staticmethod
    def with_stash(
        capacity: int,
        factory: Callable[[StashBuffer[M]], Behavior[M] | Awaitable[Behavior[M]]],
    ) -> Behavior[M]:
        """Give ``factory`` a fresh `StashBuffer` holding at most ``capacity`` messages.

        Raises:
            ConfigurationError: ``capacity`` is not a positive integer.
        """
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
            raise ConfigurationError(f"stash capacity must be a positive int, got {capacity!r}")
        return _WithStash(capacity, factory)

    # Event sourcing (casty.persistence) and sharding (casty.sharding) build on the actor core:
    # they are imported on first use, so the core never depends on them. The type checker sees
    # the real functions.
    if TYPE_CHECKING:
        event_sourced = staticmethod(_event_sourced)
        persisted = staticmethod(_persisted)
        sharded = staticmethod(_sharded)
    else:
        event_sourced = _FromPersistence()
        persisted = _FromPersistence()
        sharded = _FromSharding()
