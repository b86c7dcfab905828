"""The actor cell: mailbox, scheduling, behavior stepping, supervision and lifecycle.

Scheduling, and why it is shaped like this: an idle actor owns no task and not even a mailbox
object (an empty deque costs more than the rest of the actor), so it costs a few hundred bytes.
A message to an idle actor creates its mailbox and schedules one ``loop.call_soon`` run (or,
while `ActorSystem._woken` collects them, a run before the current loop callback returns: how
remoting handles a request in the callback that reads it). The run handles up to ``throughput``
messages. User messages whose handler returns at once (the same behavior, or a receive
behavior) are handled by plain calls, without a coroutine; anything else (a handler that raised
or returned a coroutine, a system message, an internal envelope) goes, with the rest of the
budget, to one "drain" coroutine driven by hand (``coro.send(None)``): a handler that does not
really suspend completes inside that call, with no task and no queue round trip, which is
several times cheaper than a task per message. When a handler does suspend (yields a future),
the half-run drain coroutine is handed to a task that finishes it and keeps draining, so
message order is kept; when the mailbox is empty the task ends and the actor is task-less
again. Either way one message is handled at a time: a tell from a handler, to itself or to
another actor, is queued, never handled inside the handler. Handlers run in the system's shared
``contextvars.Context`` (the run is a loop callback, not a task).

Lifecycle work (stop, restart, escalation, children terminating) goes through a small system
queue that is processed before any further user message. Stopping is children first: an actor
asks its children to stop, waits until all have terminated, then runs its post-stop hooks,
turns what is left in its mailbox into dead letters, notifies its watchers and its parent.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, final

from casty.actors.ask import reply_promises
from casty.actors.behaviors import (
    _IGNORE,
    _SAME,
    _UNHANDLED,
    Behavior,
    _Receive,
    _Same,
    _Setup,
    _Stopped,
    _Supervise,
    _Unhandled,
    _WithStash,
    _WithTimers,
)
from casty.actors.events import DeadLetterReason
from casty.actors.ref import ActorRef
from casty.actors.signals import PostStop, PreRestart, Signal
from casty.actors.stash import StashBuffer
from casty.actors.supervision import Directive, SupervisorStrategy
from casty.actors.timers import TimerScheduler
from casty.errors import ActorError, ActorStopped

if TYPE_CHECKING:
    from casty.actors.context import ActorContext
    from casty.actors.system import ActorSystem
    from casty.actors.timers import _Timer
    from casty.clock import Cancellable

__all__ = ["ActorCell", "LocalActorRef"]

log = logging.getLogger("casty.actors")

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)

# Lifecycle states, in order. Only _RUNNING handles user messages.
_STARTING, _RUNNING, _RESTARTING, _BACKOFF, _STOPPING, _TERMINATING, _TERMINATED = range(7)

# System queue entries are (kind, argument).
_SYS_STOP, _SYS_ESCALATED, _SYS_CHILDREN, _SYS_RESTART = range(4)

# Envelope kinds: internal mailbox entries, opened when they reach the head of the mailbox.
_TIMER, _WATCH, _PIPE = range(3)

_UNBOUNDED = sys.maxsize
_SPARE_MAILBOXES = 64  # empty deques kept by the system for reuse
_DISCARD: Any = object()
_MISSING: Any = object()
_POST_STOP = PostStop()
_PRE_RESTART = PreRestart()


@final
class _Envelope:
    __slots__ = ("a", "b", "c", "kind")

    def __init__(self, kind: int, a: Any, b: Any = None, c: Any = None) -> None:
        self.kind = kind
        self.a = a
        self.b = b
        self.c = c


@final
class _Supervision:
    """One `Behaviors.supervise` in force: its strategy, what a restart starts, its history."""

    __slots__ = ("behavior", "count", "restarts", "strategy")

    def __init__(self, strategy: SupervisorStrategy, behavior: Behavior[Any]) -> None:
        self.strategy = strategy
        self.behavior = behavior
        self.count = 0  # restarts counted (inside the window when there is one)
        self.restarts: deque[float] | None = None if strategy.within is None else deque()

    def allow_restart(self, now: float) -> bool:
        """Record a restart at ``now`` unless it would exceed the strategy's limit."""
        strategy = self.strategy
        restarts = self.restarts
        if restarts is not None:
            within = cast(float, strategy.within)
            while restarts and now - restarts[0] > within:
                restarts.popleft()
            self.count = len(restarts)
        if strategy.max_restarts is not None and self.count >= strategy.max_restarts:
            return False
        if restarts is not None:
            restarts.append(now)
        self.count += 1
        return True


@final
class _Extras:
    """What only some actors need, kept out of the cell to keep idle actors small."""

    __slots__ = (
        "backoff",
        "log",
        "post_stop",
        "restart",
        "stashes",
        "supervisions",
        "tasks",
        "timers",
        "watchers",
        "watching",
    )

    def __init__(self) -> None:
        self.watchers: dict[ActorRef[Any], object] | None = None  # who watches us: notice
        self.watching: set[ActorRef[Any]] | None = None  # whom we watch
        self.supervisions: list[_Supervision] | None = None  # outermost first
        self.timers: TimerScheduler[Any] | None = None
        self.stashes: list[StashBuffer[Any]] | None = None
        self.tasks: set[asyncio.Task[Any]] | None = None  # pipe_to_self tasks
        self.log: logging.LoggerAdapter[logging.Logger] | None = None
        self.post_stop: Callable[[], object] | None = None
        self.restart: _Supervision | None = None  # the supervision restarting us
        self.backoff: Cancellable | None = None


@final
class _HandlerTask(Coroutine[Any, Any, None]):
    """The coroutine of the task that finishes a run whose handler suspended.

    It hands the drain's first yield (what the handler awaits) to the task, then forwards
    every step to the drain, and lets the cell run again once the drain ends. Not an ``async
    def`` wrapper: a task cancelled before its first step never enters its coroutine's body, so
    such a wrapper would neither tell the handler nor clean up (stopping an actor right after
    its handler suspended never returned). Here that early cancellation cancels what the
    handler awaits, as a running task would, and is thrown into the handler.
    """

    __slots__ = ("_cell", "_drain", "_yielded")

    def __init__(
        self, cell: ActorCell[Any], drain: Coroutine[Any, Any, None], yielded: Any
    ) -> None:
        self._cell = cell
        self._drain = drain
        self._yielded = yielded  # _MISSING once handed to the task

    def send(self, value: Any) -> Any:
        yielded = self._yielded
        if yielded is not _MISSING:
            self._yielded = _MISSING
            return yielded
        return self._step(self._drain.send, value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        yielded = self._yielded
        if yielded is not _MISSING:
            self._yielded = _MISSING
            if isinstance(yielded, asyncio.Future):
                yielded.cancel()
        return self._step(self._drain.throw, typ if val is None else val)

    def close(self) -> None:
        self._drain.close()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("a handler task's coroutine is driven by its task only")

    # What asyncio reads to describe a task (repr, get_stack, print_stack).
    @property
    def __name__(self) -> str:
        return f"actor {self._cell._ref.path}"

    @property
    def cr_code(self) -> Any:
        return cast("CoroutineType[Any, Any, None]", self._drain).cr_code

    @property
    def cr_frame(self) -> Any:
        return cast("CoroutineType[Any, Any, None]", self._drain).cr_frame

    def _step(self, step: Callable[[Any], Any], argument: Any) -> Any:
        try:
            return step(argument)
        except BaseException:  # StopIteration included: the drain is over
            cell = self._cell
            cell._task = None
            cell._after_run()
            raise


@final
class LocalActorRef(ActorRef[M_contra]):
    """A ref to an actor of an `ActorSystem` in this process."""

    __slots__ = ("_cell", "_path")

    def __init__(self, cell: ActorCell[Any], path: str) -> None:
        self._cell = cell
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    @property
    def address(self) -> str:
        return self._cell._system._address_prefix + self._path

    def tell(self, message: M_contra) -> None:
        cell = self._cell
        mailbox = cell._mailbox
        if mailbox is None:
            if cell._status == _TERMINATED:
                cell._system._dead_letter(message, self, DeadLetterReason.RECIPIENT_STOPPED)
                return
            spare = cell._system._spare_mailboxes
            mailbox = cell._mailbox = spare.pop() if spare else deque()
        elif len(mailbox) >= cell._capacity:
            cell._system._dead_letter(message, self, DeadLetterReason.MAILBOX_FULL)
            return
        mailbox.append(message)
        if not cell._scheduled:
            cell._scheduled = True
            cell._system._wake(cell)

    def _watch(self, watcher: ActorRef[Any], notice: object) -> None:
        cell = self._cell
        if cell._status == _TERMINATED:
            watcher._notify_terminated(self, notice)
            return
        extras = cell._x()
        if extras.watchers is None:
            extras.watchers = {}
        extras.watchers[watcher] = notice

    def _unwatch(self, watcher: ActorRef[Any]) -> None:
        extras = self._cell._extras
        if extras is not None and extras.watchers is not None:
            extras.watchers.pop(watcher, None)

    def _notify_terminated(self, subject: ActorRef[Any], notice: object) -> None:
        self._cell._enqueue_envelope(_Envelope(_WATCH, subject, notice))

    def __eq__(self, other: object) -> bool:
        if type(other) is LocalActorRef:
            return self._path == other._path and (
                self._cell._system is other._cell._system or self.address == other.address
            )
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(self._path)


class ActorCell(Generic[M]):
    """The runtime of one actor. `ActorContext` adds the public API on top of it."""

    __slots__ = (
        "_behavior",
        "_capacity",
        "_children",
        "_extras",
        "_initial",
        "_mailbox",
        "_name",
        "_parent",
        "_ref",
        "_scheduled",
        "_status",
        "_sysq",
        "_system",
        "_task",
    )

    def __init__(
        self,
        system: ActorSystem,
        parent: ActorCell[Any] | None,
        name: str,
        path: str,
        behavior: Behavior[M],
        capacity: int = _UNBOUNDED,
    ) -> None:
        self._system = system
        self._parent = parent
        self._name = name
        self._ref: LocalActorRef[M] = LocalActorRef(self, path)
        self._behavior: _Receive[M] = _IGNORE  # the current behavior once started
        self._initial: Behavior[M] | None = behavior  # what _start sets up
        self._mailbox: deque[Any] | None = None  # created on demand, dropped when empty
        self._capacity = capacity
        self._scheduled = False  # a run is pending, or running (inline or in `_task`)
        self._status = _STARTING
        self._sysq: list[tuple[int, Any]] | None = None
        self._task: asyncio.Task[None] | None = None  # set while a handler suspended
        self._children: dict[str, ActorCell[Any]] | None = None
        self._extras: _Extras | None = None

    # -- small helpers ----------------------------------------------------------------------

    def _x(self) -> _Extras:
        extras = self._extras
        if extras is None:
            extras = self._extras = _Extras()
        return extras

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._system._wake(self)

    def _ending(self) -> bool:
        """Whether this incarnation is over: restarting (old children stopping, PreRestart,
        backoff) or stopping. Timers started now would reach the next incarnation or none."""
        return self._status > _RUNNING

    def _message_next(self) -> bool:
        """Whether the next thing this actor handles is a user message already queued (no
        system message or internal envelope first). Event sourcing uses it to let queued
        commands join one write."""
        mailbox = self._mailbox
        if not mailbox or self._sysq is not None:
            return False
        return mailbox[0].__class__ is not _Envelope

    def _cancelling(self) -> bool:
        """Whether our own task is being cancelled (by a stop), as opposed to a handler's
        ``CancelledError`` of its own making."""
        task = self._task
        return task is not None and task.cancelling() > 0

    # -- enqueueing -------------------------------------------------------------------------

    def _enqueue_sys(self, kind: int, argument: object) -> None:
        queue = self._sysq
        if queue is None:
            self._sysq = [(kind, argument)]
        else:
            queue.append((kind, argument))
        self._schedule()

    def _enqueue_envelope(self, envelope: _Envelope) -> None:
        """Enqueue an internal entry, ignoring the mailbox bound (it must not be lost)."""
        if self._status == _TERMINATED:
            return
        mailbox = self._mailbox
        if mailbox is None:
            mailbox = self._mailbox = deque()
        mailbox.append(envelope)
        self._schedule()

    def _deliver_timer(self, timer: _Timer) -> None:
        if self._status == _TERMINATED:
            return
        mailbox = self._mailbox
        if mailbox is None:
            mailbox = self._mailbox = deque()
        elif len(mailbox) >= self._capacity:
            self._system._dead_letter(timer.message, self._ref, DeadLetterReason.MAILBOX_FULL)
            return
        mailbox.append(_Envelope(_TIMER, timer))
        self._schedule()

    def _prepend(self, messages: deque[Any]) -> None:
        mailbox = self._mailbox
        if mailbox is None:
            mailbox = self._mailbox = deque()
        mailbox.extendleft(reversed(messages))
        self._schedule()

    # -- running ----------------------------------------------------------------------------

    def _run(self, budget: int = 0) -> None:
        """A loop callback: drain inline; hand over to a task only if a handler suspends.

        ``budget``: messages this run may handle (0: the system's throughput).

        User messages to a running actor whose handler returns the same behavior (or a
        receive behavior) at once are handled here, without a coroutine; the first message
        that needs more (a handler that raised or returned a coroutine or another behavior, a
        system message, an internal envelope, a stop) and the rest of the budget go to the
        drain coroutine, which handles it exactly as if it had run from the start.
        """
        system = self._system
        budget = budget or system._throughput
        pending: tuple[Any, Any, BaseException | None] | None = None
        mailbox = self._mailbox
        if mailbox and self._sysq is None and self._status == _RUNNING:
            if len(mailbox) > system._mailbox_high_water:
                system._mailbox_high_water = len(mailbox)  # deepest when a run starts
            ctx: ActorContext[M] = self  # type: ignore[assignment]  # every cell is a context
            handled = 0
            try:
                while budget:
                    message = mailbox[0]
                    if message.__class__ is _Envelope:
                        break
                    mailbox.popleft()
                    budget -= 1
                    handled += 1
                    try:
                        result = self._behavior.handler(ctx, message)
                    except Exception as exc:
                        pending = (message, None, exc)
                        break
                    except asyncio.CancelledError as exc:  # no task of ours to be cancelled
                        pending = (message, None, exc)
                        break
                    if result is not _SAME:
                        if type(result) is not _Receive:
                            pending = (message, result, None)
                            break
                        self._behavior = result
                    if self._sysq is not None or self._status != _RUNNING:
                        break
                    mailbox = self._mailbox
                    if not mailbox:
                        break
            except BaseException:  # not an Exception nor a cancellation: it ends the run
                system._processed += handled
                self._after_run()
                raise
            system._processed += handled
            if pending is None and self._sysq is None:
                # Nothing the drain would do: spare its coroutine.
                if not self._mailbox and self._status == _RUNNING:
                    self._idle()  # what self._after_run() comes to for an idle actor
                    return
                if not budget:
                    self._after_run()
                    return
        self._start_drain(budget, pending)

    def _start_drain(
        self, budget: int, pending: tuple[Any, Any, BaseException | None] | None
    ) -> None:
        """Go on with the drain coroutine, as a task if it suspends (see `_run`)."""
        drain = self._drain(budget, pending)
        try:
            yielded = drain.send(None)
        except StopIteration:
            self._after_run()
            return
        except BaseException:
            self._after_run()
            raise
        self._task = self._system._start_task(_HandlerTask(self, drain, yielded))

    def _idle_running(self) -> bool:
        """Running, with nothing queued, scheduled or pending: `_run_one` may take a message."""
        return (
            self._status == _RUNNING
            and self._mailbox is None
            and not self._scheduled
            and self._sysq is None
        )

    def _run_one(self, message: Any) -> None:
        """`_run` for ``message``, handed over without the mailbox to this running actor while
        it is idle (no mailbox, no run scheduled, no system message): what telling it and
        running at once would do, for a request that arrived from a peer
        (`ActorSystem._run_now`). Then the run goes on as `_run` would after its first
        message: whatever the handler left to do (a coroutine, a new behavior, a failure) goes
        to the drain coroutine, and messages told to the actor meanwhile are handled next,
        within the same budget.
        """
        system = self._system
        self._scheduled = True  # tells from the handler queue up, as during any run
        if not system._mailbox_high_water:
            system._mailbox_high_water = 1  # as `_run` records a run starting with one message
        pending: tuple[Any, Any, BaseException | None] | None = None
        ctx: ActorContext[M] = self  # type: ignore[assignment]  # every cell is a context
        try:
            result = self._behavior.handler(ctx, message)
        except Exception as exc:
            pending = (message, None, exc)
        except asyncio.CancelledError as exc:  # no task of ours to be cancelled
            pending = (message, None, exc)
        except BaseException:  # not an Exception nor a cancellation: it ends the run
            system._processed += 1
            self._after_run()
            raise
        else:
            if result is not _SAME:
                if type(result) is _Receive:
                    self._behavior = result
                else:
                    pending = (message, result, None)
        system._processed += 1
        if pending is not None:
            self._start_drain(system._throughput - 1, pending)
        elif self._sysq is None and not self._mailbox and self._status == _RUNNING:
            self._idle()  # what self._after_run() comes to for an idle actor
        elif system._throughput > 1:
            self._run(system._throughput - 1)  # the rest of this run
        else:
            self._after_run()

    def _after_run(self) -> None:
        if self._sysq is not None or (self._status <= _RUNNING and self._mailbox):
            self._system._wake(self)
            return
        self._idle()

    def _idle(self) -> None:
        """End a run with nothing left to do: unscheduled, and the empty mailbox given back
        (an idle actor keeps no deque; a few spares save busy actors the allocation)."""
        self._scheduled = False
        mailbox = self._mailbox
        if mailbox is not None and not mailbox:
            self._mailbox = None
            spare = self._system._spare_mailboxes
            if len(spare) < _SPARE_MAILBOXES:
                spare.append(mailbox)

    async def _drain(
        self, budget: int, pending: tuple[Any, Any, BaseException | None] | None
    ) -> None:
        """Handle up to ``budget`` more entries, after finishing ``pending`` (a message `_run`
        handled in part, what its handler returned and what it raised)."""
        ctx: ActorContext[M] = self  # type: ignore[assignment]  # every cell is a context
        system = self._system
        if pending is None:
            mailbox = self._mailbox
            if mailbox is not None and len(mailbox) > system._mailbox_high_water:
                system._mailbox_high_water = len(mailbox)  # deepest when a run starts
        else:
            await self._finish_message(*pending)
        handled = 0
        try:
            while budget:
                budget -= 1
                if self._sysq is not None:
                    await self._system_message()
                    continue
                status = self._status
                if status != _RUNNING:
                    if status == _STARTING:
                        await self._start()
                        continue
                    return
                mailbox = self._mailbox
                if not mailbox:
                    return
                message = mailbox.popleft()
                try:
                    if message.__class__ is _Envelope:
                        message = self._open(message)
                        if message is _DISCARD:
                            continue
                    handled += 1
                    result = self._behavior.handler(ctx, message)
                except (Exception, asyncio.CancelledError) as exc:
                    await self._finish_message(message, None, exc)
                    continue
                if result is not _SAME:
                    await self._finish_message(message, result, None)
        finally:
            system._processed += handled

    async def _finish_message(
        self, message: Any, result: Any, failure: BaseException | None
    ) -> None:
        """Finish handling ``message``, whose handler returned ``result`` (awaited if a
        coroutine, then the behavior taken) or raised ``failure`` (supervised): for `_drain`,
        and for the plain-call runs of `_run` and `_run_one` that handed it over."""
        try:
            if failure is not None:
                raise failure
            if type(result) is CoroutineType:
                result = await result
            if result is not _SAME:
                if type(result) is _Receive:
                    self._behavior = result
                else:
                    await self._become(result, message)
        except Exception as exc:
            await self._fail(exc)
        except asyncio.CancelledError as exc:
            if self._cancelling():
                # Stopped while handling `message`: its asker need not wait for a timeout.
                self._fail_asks(message)
                raise
            await self._fail(exc)

    def _fail_asks(self, message: object) -> None:
        """Fail the asks whose ``reply_to`` is a top-level field of ``message`` (a reply
        already told wins: a completed ask is not failed)."""
        for promise in reply_promises(message):
            promise.fail(ActorStopped(f"{self._ref.path} stopped while handling the request"))

    def _open(self, envelope: _Envelope) -> Any:
        kind = envelope.kind
        if kind == _TIMER:
            timer: _Timer = envelope.a
            return timer.message if timer.accept() else _DISCARD
        if kind == _WATCH:
            extras = self._extras
            watching = None if extras is None else extras.watching
            if watching is not None and envelope.a in watching:
                watching.discard(envelope.a)
                return envelope.b
            return _DISCARD
        # _PIPE: map the awaited outcome to a message, here, so a failing mapper is supervised.
        return envelope.a(envelope.b, envelope.c)

    async def _become(self, result: object, message: object) -> None:
        if result is _UNHANDLED:
            self._system._dead_letter(message, self._ref, DeadLetterReason.UNHANDLED)
            return
        if not isinstance(result, Behavior) and inspect.isawaitable(result):
            result = await result
        if not isinstance(result, Behavior):
            raise ActorError(
                f"{self._ref.path}: a handler returned {result!r}, not a Behavior "
                "(return Behaviors.same() to keep the current one)"
            )
        if result is _SAME:
            return
        if result is _UNHANDLED:
            self._system._dead_letter(message, self._ref, DeadLetterReason.UNHANDLED)
            return
        behavior = await self._canonical(result)
        if behavior is not None:
            self._behavior = behavior

    async def _start(self) -> None:
        initial = self._initial
        self._initial = None
        if initial is None:  # defensive: nothing to start means nothing to run
            self._status = _RUNNING
            return
        try:
            behavior = await self._canonical(initial)
        except Exception as exc:
            await self._fail(exc)
            return
        except asyncio.CancelledError as exc:
            if self._cancelling():
                raise
            await self._fail(exc)
            return
        if behavior is not None and self._status == _STARTING:
            self._behavior = behavior
            self._status = _RUNNING

    async def _canonical(self, behavior: Behavior[M]) -> _Receive[M] | None:
        """Unwrap setup / supervise / timers / stash down to a receive behavior; ``None`` when
        the behavior stops the actor."""
        ctx = cast("ActorContext[M]", self)
        while True:
            result: object
            if isinstance(behavior, _Receive):
                return behavior
            if isinstance(behavior, _Setup):
                result = behavior.factory(ctx)
            elif isinstance(behavior, _Supervise):
                self._add_supervision(behavior)
                result = behavior.behavior
            elif isinstance(behavior, _WithTimers):
                result = behavior.factory(self._timer_scheduler())
            elif isinstance(behavior, _WithStash):
                result = behavior.factory(self._new_stash(behavior.capacity))
            elif isinstance(behavior, _Stopped):
                self._stop_self(behavior.post_stop)
                return None
            elif isinstance(behavior, (_Same, _Unhandled)):
                raise ActorError(f"{self._ref.path}: {type(behavior).__name__} cannot start")
            else:
                raise ActorError(f"{self._ref.path}: expected a Behavior, got {behavior!r}")
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, Behavior):
                raise ActorError(f"{self._ref.path}: a factory returned {result!r}, not a Behavior")
            behavior = result

    def _add_supervision(self, behavior: _Supervise[Any]) -> None:
        extras = self._x()
        if extras.supervisions is None:
            extras.supervisions = []
        elif any(s.strategy == behavior.strategy for s in extras.supervisions):
            return
        extras.supervisions.append(_Supervision(behavior.strategy, behavior.behavior))

    def _timer_scheduler(self) -> TimerScheduler[Any]:
        extras = self._x()
        if extras.timers is None:
            extras.timers = TimerScheduler(self)
        return extras.timers

    def _new_stash(self, capacity: int) -> StashBuffer[Any]:
        extras = self._x()
        stash: StashBuffer[Any] = StashBuffer(self, capacity)
        if extras.stashes is None:
            extras.stashes = []
        extras.stashes.append(stash)
        return stash

    async def _call_hook(self, what: str, hook: Callable[..., object], *args: object) -> None:
        """Run user lifecycle code (sync or async); its exceptions are logged, not supervised."""
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            path = self._ref.path
            log.exception("%s: %s raised", path, what, extra={"actor_path": path})
        except asyncio.CancelledError:
            if self._cancelling():
                raise
            path = self._ref.path
            log.exception("%s: %s raised", path, what, extra={"actor_path": path})

    async def _signal(self, signal: Signal) -> None:
        on_signal = self._behavior.on_signal
        if on_signal is not None:
            await self._call_hook(type(signal).__name__, on_signal, self, signal)

    # -- failure and supervision ------------------------------------------------------------

    async def _fail(self, exc: BaseException, origin: str | None = None) -> None:
        path = self._ref.path
        supervision = None
        extras = self._extras
        if extras is not None and extras.supervisions:
            for candidate in reversed(extras.supervisions):
                if candidate.strategy.handles(exc):
                    supervision = candidate
                    break
        directive = Directive.STOP if supervision is None else supervision.strategy.directive
        what = f"failure escalated from {origin}" if origin else "failed"
        if directive is Directive.RESUME and self._status == _STARTING:
            directive = Directive.STOP  # there is no state to resume
        if directive is Directive.RESTART:
            assert supervision is not None
            if not supervision.allow_restart(self._system._clock.monotonic()):
                log.error(
                    "%s %s; restart limit reached, stopping",
                    path,
                    what,
                    exc_info=exc,
                    extra={"actor_path": path},
                )
                await self._begin_stop()
                return
        log.error(
            "%s %s: %r; %s",
            path,
            what,
            exc,
            directive.value,
            exc_info=exc,
            extra={"actor_path": path},
        )
        if directive is Directive.RESUME:
            return
        if directive is Directive.RESTART:
            assert supervision is not None
            await self._begin_restart(supervision)
            return
        if directive is Directive.ESCALATE and self._parent is not None:
            self._parent._enqueue_sys(_SYS_ESCALATED, (exc, path))
        await self._begin_stop()

    async def _begin_restart(self, supervision: _Supervision) -> None:
        self._status = _RESTARTING
        extras = self._x()
        extras.restart = supervision
        self._cancel_activities(tasks=False)
        if self._children:
            for child in list(self._children.values()):
                child._request_stop()
        else:
            await self._children_gone()

    async def _children_gone(self) -> None:
        """Restarting, and the old children have all terminated: PreRestart, then maybe wait."""
        await self._signal(_PRE_RESTART)
        self._behavior = _IGNORE
        extras = self._x()
        supervision = extras.restart
        assert supervision is not None
        backoff = supervision.strategy.backoff
        if backoff is not None:
            self._status = _BACKOFF
            delay = backoff.delay(supervision.count - 1)
            extras.backoff = self._system._clock.call_later(
                delay, self._enqueue_sys, _SYS_RESTART, None
            )
            return
        self._finish_restart()

    def _finish_restart(self) -> None:
        if self._status != _RESTARTING and self._status != _BACKOFF:
            return
        extras = self._x()
        supervision = extras.restart
        assert supervision is not None and extras.supervisions is not None
        extras.restart = None
        extras.backoff = None
        self._discard_stashes(DeadLetterReason.STASH_DISCARDED)
        # The old incarnation's watches end with it; the new one sets up its own.
        watching = extras.watching
        extras.watching = None
        for watched in watching or ():
            watched._unwatch(self._ref)
        # Strategies inside the restarted behavior come back when it is set up again.
        del extras.supervisions[extras.supervisions.index(supervision) + 1 :]
        self._initial = supervision.behavior
        self._status = _STARTING

    # -- stopping ---------------------------------------------------------------------------

    def _stop_self(self, post_stop: Callable[[], object] | None) -> None:
        """Stop after the current message (a handler returned `Behaviors.stopped`)."""
        if post_stop is not None:
            self._x().post_stop = post_stop
        self._enqueue_sys(_SYS_STOP, None)

    def _request_stop(self) -> None:
        """Stop this actor, from outside it: a suspended handler is cancelled."""
        if self._status >= _STOPPING:
            return
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._enqueue_sys(_SYS_STOP, None)

    async def _system_message(self) -> None:
        queue = self._sysq
        assert queue is not None
        kind, argument = queue.pop(0)
        if not queue:
            self._sysq = None
        if kind == _SYS_STOP:
            await self._begin_stop()
        elif kind == _SYS_CHILDREN:
            if not self._children:
                if self._status == _STOPPING:
                    await self._finish_stop()
                elif self._status == _RESTARTING:
                    await self._children_gone()
        elif kind == _SYS_ESCALATED:
            exc, origin = argument
            if self._status <= _RUNNING:
                await self._fail(exc, origin)
        elif kind == _SYS_RESTART:
            self._finish_restart()

    async def _begin_stop(self) -> None:
        if self._status >= _STOPPING:
            return
        self._status = _STOPPING
        self._cancel_activities(tasks=True)
        if self._children:
            for child in list(self._children.values()):
                child._request_stop()
        else:
            await self._finish_stop()

    def _child_terminated(self, child: ActorCell[Any]) -> None:
        children = self._children
        if children is not None and children.get(child._name) is child:
            del children[child._name]
            if not children:
                self._children = None
                if self._status == _STOPPING or self._status == _RESTARTING:
                    self._enqueue_sys(_SYS_CHILDREN, None)

    async def _finish_stop(self) -> None:
        self._status = _TERMINATING
        await self._signal(_POST_STOP)
        extras = self._extras
        if extras is not None and extras.post_stop is not None:
            await self._call_hook("post_stop", extras.post_stop)
        self._status = _TERMINATED
        system = self._system
        ref = self._ref
        mailbox = self._mailbox
        self._mailbox = None
        self._sysq = None
        self._behavior = _IGNORE
        if mailbox:
            reason = DeadLetterReason.RECIPIENT_STOPPED
            for message in mailbox:
                if message.__class__ is not _Envelope:
                    system._dead_letter(message, ref, reason)
        if extras is not None:
            self._discard_stashes(DeadLetterReason.RECIPIENT_STOPPED)
            self._extras = None
            for watched in extras.watching or ():
                watched._unwatch(ref)
            for watcher, notice in (extras.watchers or {}).items():
                watcher._notify_terminated(ref, notice)
        if self._parent is not None:
            self._parent._child_terminated(self)
        system._actor_terminated(self)

    def _discard_stashes(self, reason: DeadLetterReason) -> None:
        extras = self._extras
        if extras is None or not extras.stashes:
            return
        stashes = extras.stashes
        extras.stashes = None
        for stash in stashes:
            self._dead_letters(stash._drain(), reason)

    def _dead_letters(self, messages: Iterable[object], reason: DeadLetterReason) -> None:
        for message in messages:
            self._system._dead_letter(message, self._ref, reason)

    def _cancel_activities(self, *, tasks: bool) -> None:
        extras = self._extras
        if extras is None:
            return
        if extras.timers is not None:
            extras.timers.cancel_all()
        if extras.backoff is not None:
            extras.backoff.cancel()
            extras.backoff = None
        if tasks and extras.tasks:
            for task in list(extras.tasks):
                task.cancel()
