"""`ActorSystem`: the root of an actor hierarchy, with asks, dead letters and the event stream."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar, final

from casty.abc import RefCodec
from casty.actors.ask import AskTimeouts, PromiseRef, reply_promises
from casty.actors.behaviors import _IGNORE, Behavior
from casty.actors.cell import (
    _RUNNING,
    _STOPPING,
    _TERMINATED,
    ActorCell,
    LocalActorRef,
    _Supervision,
)
from casty.actors.context import ActorContext
from casty.actors.events import (
    DeadLetter,
    DeadLetterReason,
    EventStreamCommand,
    EventStreamPublish,
    event_stream_behavior,
)
from casty.actors.ref import ActorRef
from casty.actors.supervision import SupervisorStrategy
from casty.clock import Clock, SystemClock
from casty.errors import (
    ActorError,
    ActorStopped,
    CastyError,
    ConfigurationError,
    MailboxFull,
    ResourceClosed,
    StashOverflow,
    UnhandledMessage,
)
from casty.metrics import LatencyHistogram, Metrics, snapshot

__all__ = ["ActorRefCodec", "ActorSystem", "ActorSystemStatistics"]

log = logging.getLogger("casty.actors")

M = TypeVar("M")
T = TypeVar("T")

_SYSTEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_OPEN, _SHUTTING_DOWN, _SHUT_DOWN = range(3)
_INF = math.inf


@dataclass(frozen=True, slots=True)
class ActorSystemStatistics:
    """A snapshot of an `ActorSystem`.

    Attributes:
        actors: actors spawned and not yet terminated (casty's own system actors included,
            guardians excluded).
        dead_letters: messages dropped since the system started.
        tasks: asyncio tasks the system started that are still running (handlers suspended in
            an ``await``, ``pipe_to_self``).
    """

    actors: int
    dead_letters: int
    tasks: int


@final
class _DeadRef(ActorRef[Any]):
    """A ref leading nowhere: `system.dead_letters`, or an address that resolves to nothing."""

    __slots__ = ("_address", "_path", "_reason", "_system")

    def __init__(
        self, system: ActorSystem, path: str, reason: DeadLetterReason, address: str | None = None
    ) -> None:
        self._system = system
        self._path = path
        self._reason = reason
        self._address = address

    @property
    def path(self) -> str:
        return self._path

    @property
    def address(self) -> str:
        return self._address or self._system._address_prefix + self._path

    def tell(self, message: Any) -> None:
        self._system._dead_letter(message, self, self._reason)


@final
class ActorRefCodec(RefCodec):
    """Writes actor refs as their address and resolves addresses through `ActorSystem.resolve`.

    Hand ``system.ref_codec`` to a `Serializer` so messages can carry refs (``reply_to``).
    """

    ref_type: ClassVar[type] = ActorRef

    def __init__(self, system: ActorSystem) -> None:
        self._system = system

    def to_wire(self, ref: Any) -> str:
        return str(ref.address)

    def from_wire(self, address: str) -> ActorRef[Any]:
        return self._system.resolve(address)


def _undeliverable(message: object, recipient: ActorRef[Any], reason: str) -> ActorError | None:
    """The error an ask fails with when its request became a dead letter for ``reason``.

    ``None`` for a late ask reply (not a request) and for reasons of other layers (remoting,
    sharding), which fail the asks they drop themselves, with errors that fit their reasons.
    """
    path = recipient.path
    if reason == DeadLetterReason.RECIPIENT_STOPPED:
        return ActorStopped(f"{path} is stopped")
    if reason == DeadLetterReason.UNHANDLED:
        return UnhandledMessage(f"{path} did not handle {message!r}")
    if reason == DeadLetterReason.MAILBOX_FULL:
        return MailboxFull(f"the mailbox of {path} is full; the request was dropped")
    if reason == DeadLetterReason.STASH_OVERFLOW:
        return StashOverflow(f"the stash of {path} is full; the request was dropped")
    if reason == DeadLetterReason.STASH_DISCARDED:
        return ActorStopped(f"{path} restarted and discarded the stashed request")
    if reason == DeadLetterReason.UNKNOWN_RECIPIENT:
        return ActorStopped(f"no live actor at {recipient.address} (unknown recipient)")
    if reason == DeadLetterReason.SENT_TO_DEAD_LETTERS:
        return ActorStopped("the request was sent to dead letters")
    return None


class ActorSystem:
    """A tree of actors under ``/user`` (yours) and ``/system`` (casty's), and their services.

    Use it as an async context manager; leaving the block stops every actor (children first,
    post-stop hooks run) and awaits every task the system started::

        async with ActorSystem(name="shop") as system:
            cart = system.spawn(cart_behavior(), "cart")
            total = await system.ask(cart, lambda reply_to: GetTotal(reply_to), timeout=5.0)

    A handler that raises is handled by supervision and never takes the system down. Sending to
    a stopped actor is a dead letter, not an error.

    Args:
        name: the system's name, ``[A-Za-z0-9][A-Za-z0-9_-]*``; addresses read
            ``casty://<name>/user/...``.
        clock: time source for timers, ask timeouts and backoff; `SystemClock` by default,
            `casty.testing.ManualClock` in tests.
        throughput: messages an actor handles per turn before yielding the event loop (>= 1);
            higher favours throughput, lower fairness.
        shutdown_timeout: seconds (> 0; ``math.inf`` for no bound) `shutdown` waits for the
            actors to stop and the system's tasks to end before abandoning what is left (see
            `shutdown`).

    Raises:
        ConfigurationError: bad name, throughput or shutdown_timeout, or no running event loop
            (create the system inside async code).

    Extending (for the cluster layer): override the hooks `_start_services` (run once by
    `start`), `_before_stop_actors` and `_after_stop_actors` (run by `shutdown` around stopping
    the actors) and `_resolve_foreign` (addresses of other nodes); set `_address_prefix` to the
    node's address (``"casty://name@host:port"``) before refs are handed out.
    """

    def __init__(
        self,
        name: str = "casty",
        *,
        clock: Clock | None = None,
        throughput: int = 300,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if not isinstance(name, str) or not _SYSTEM_NAME.fullmatch(name):
            raise ConfigurationError(
                f"invalid system name {name!r}: use letters, digits, '_' and '-'"
            )
        if not isinstance(throughput, int) or throughput < 1:
            raise ConfigurationError(f"throughput must be an int >= 1, got {throughput!r}")
        if (
            not isinstance(shutdown_timeout, (int, float))
            or isinstance(shutdown_timeout, bool)
            or not shutdown_timeout > 0  # also rejects NaN
        ):
            raise ConfigurationError(
                f"shutdown_timeout must be seconds > 0 (math.inf: no bound), "
                f"got {shutdown_timeout!r}"
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError as exc:
            raise ConfigurationError(
                "an ActorSystem must be created inside a running event loop (in async code)"
            ) from exc
        self._name = name
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._loop = loop
        self._call_soon = loop.call_soon
        # loop.create_future, without its Python frame when it is asyncio's own (an ask's).
        self._new_future: Callable[[], asyncio.Future[Any]] = (
            functools.partial(asyncio.Future, loop=loop)
            if getattr(type(loop), "create_future", None) is asyncio.BaseEventLoop.create_future
            else loop.create_future
        )
        # While not None, cells woken by a tell are collected here instead of scheduled, and
        # run before the current loop callback returns (`_run_woken`).
        self._woken: list[ActorCell[Any]] | None = None
        # Actor runs are loop callbacks; one shared context spares a copy per run.
        self._context = contextvars.copy_context()
        self._throughput = throughput
        self._shutdown_timeout = None if shutdown_timeout == _INF else float(shutdown_timeout)
        self._address_prefix = f"casty://{name}"
        self._tasks: set[asyncio.Task[Any]] = set()
        self._spare_mailboxes: list[deque[Any]] = []
        self._temp: dict[str, PromiseRef] = {}
        self._temp_ids = itertools.count(1)
        self._ask_timeouts = AskTimeouts(self._clock)
        self._live_actors = 0
        # Metrics (`metrics()`): plain counters, bumped on the hot path.
        self._processed = 0
        self._mailbox_high_water = 0
        self._dead_letter_reasons: dict[str, int] = {}
        self._journal_writes = LatencyHistogram()
        # (mailbox capacity, supervisor strategy) for user actors spawned without their own;
        # set from a configuration (`casty.config`), None when there is nothing to apply.
        self._user_defaults: tuple[int | None, SupervisorStrategy | None] | None = None
        self._state = _OPEN
        self._started = False
        self._shut_down = asyncio.Event()
        self._codec: ActorRefCodec | None = None
        self._root = self._guardian(None, "")
        self._user = self._guardian(self._root, "user")
        self._system_guardian = self._guardian(self._root, "system")
        self._dead_letters = _DeadRef(self, "/deadLetters", DeadLetterReason.SENT_TO_DEAD_LETTERS)
        self._event_stream: LocalActorRef[EventStreamCommand] = self._system_guardian._spawn(
            event_stream_behavior(), "eventStream", None
        )

    def _guardian(self, parent: ActorContext[Any] | None, name: str) -> ActorContext[Any]:
        """A running, never-failing cell: escalated failures reaching it are logged, resumed."""
        cell: ActorContext[Any] = ActorContext(self, parent, name, f"/{name}", _IGNORE)
        cell._initial = None
        cell._status = _RUNNING
        cell._x().supervisions = [_Supervision(SupervisorStrategy.resume(), _IGNORE)]
        if parent is not None:
            if parent._children is None:
                parent._children = {}
            parent._children[name] = cell
        return cell

    # -- public API ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The system's name."""
        return self._name

    @property
    def address(self) -> str:
        """The address prefix of this system's actors, e.g. ``"casty://shop"``."""
        return self._address_prefix

    @property
    def clock(self) -> Clock:
        """The clock every timer and timeout of this system reads."""
        return self._clock

    @property
    def event_stream(self) -> ActorRef[EventStreamCommand]:
        """The event stream: tell it `EventStreamSubscribe`, `EventStreamUnsubscribe` or
        `EventStreamPublish`. Commands take effect in the order they are told."""
        return self._event_stream

    @property
    def dead_letters(self) -> ActorRef[Any]:
        """A ref that turns everything told to it into a `DeadLetter`."""
        return self._dead_letters

    @property
    def ref_codec(self) -> RefCodec:
        """The `RefCodec` serializers use to write and read this system's refs."""
        if self._codec is None:
            self._codec = ActorRefCodec(self)
        return self._codec

    def publish(self, event: object) -> None:
        """Publish ``event`` on the event stream (``event_stream.tell(EventStreamPublish(e))``)."""
        self._event_stream.tell(EventStreamPublish(event))

    def spawn(
        self, behavior: Behavior[M], name: str, *, mailbox_capacity: int | None = None
    ) -> ActorRef[M]:
        """Start a top-level actor at ``/user/<name>``.

        The actor starts (its setup runs) asynchronously, after this call returns; messages
        told to it meanwhile wait in its mailbox.

        Args:
            behavior: the actor's initial behavior.
            name: one or more ASCII letters, digits, ``-``, ``_``, ``.``, ``~`` and ``%``,
                but not ``.`` or ``..`` (a path segment of an address, so never ``/``, ``@``,
                ``:``, ``?``, ``#``, whitespace or control characters); percent-encode other
                text, e.g. ``urllib.parse.quote(text, safe="")``. Unique among live top-level
                actors.
            mailbox_capacity: ``None`` for an unbounded mailbox, else the most queued messages;
                more become dead letters ("mailbox full").

        Raises:
            InvalidActorName: malformed name, or a live top-level actor has it.
            ConfigurationError: ``behavior`` or ``mailbox_capacity`` is invalid.
            ResourceClosed: the system is shutting down or shut down.
        """
        self._check_open()
        return self._user._spawn(behavior, name, mailbox_capacity)

    def system_actor_of(
        self, behavior: Behavior[M], name: str, *, mailbox_capacity: int | None = None
    ) -> ActorRef[M]:
        """Start an actor at ``/system/<name>``, for casty's own services (cluster, sharding).

        System actors stop after every user actor at shutdown. Raises like `spawn`.
        """
        self._check_open()
        return self._system_guardian._spawn(behavior, name, mailbox_capacity)

    async def ask(
        self,
        target: ActorRef[T],
        factory: Callable[[ActorRef[Any]], T],
        timeout: float = 5.0,
    ) -> Any:
        """Send ``factory(reply_to)`` to ``target`` and return the first message told to
        ``reply_to``.

        ``reply_to`` is a temporary ref; it can travel to other nodes. Replies after the first,
        or after the ask ended, become dead letters ("late ask reply").

        Args:
            target: where to send the request.
            factory: builds the request from the reply ref, e.g. ``lambda r: Get(key, r)``.
            timeout: seconds to wait for the reply (> 0, finite), on the system's clock; the
                timeout fires never early and at most 10 ms late (about 0.1 % late above
                10.24 s).

        The ask fails fast, instead of waiting for its timeout, when the request cannot be
        handled and ``reply_to`` is a top-level field of the request (a dataclass field, a
        tuple item or an attribute), or of the request an envelope wraps (a `ShardEnvelope`'s
        ``message``; see `casty.actors.ask.request_fields`); a ``reply_to`` nested deeper
        surfaces as `AskTimeout`: the request became a dead letter, or ``target`` was stopped
        while handling it.

        Raises:
            AskTimeout: no reply within ``timeout``; the request may or may not be handled.
            ActorStopped: ``target`` had stopped, stopped with the request still queued, or was
                stopped while handling it (a reply told before that still wins); or the ref
                leads nowhere: an address that resolves to no live actor ("unknown
                recipient", also for refs decoded from the wire) or ``system.dead_letters``;
                or ``target`` restarted and discarded the request from its stash.
            MailboxFull: ``target``'s bounded mailbox was full; the request was dropped.
            StashOverflow: ``target`` tried to stash the request into a full stash.
            UnhandledMessage: ``target`` returned ``Behaviors.unhandled()`` for the request.
            ConfigurationError: bad ``timeout``, or ``target`` is not a ref.

        Cancelling the caller ends the ask; a later reply becomes a dead letter.
        """
        if not (0 < timeout < _INF):
            raise ConfigurationError(f"timeout must be positive and finite, got {timeout!r}")
        try:
            tell = target.tell
        except AttributeError:
            raise ConfigurationError(f"ask needs an ActorRef target, got {target!r}") from None
        future: asyncio.Future[Any] = self._new_future()
        promise = PromiseRef(self, future, target, timeout)
        message = factory(promise)
        try:
            tell(message)
            # After the tell: a remote request leaves sooner (its timer is not urgent).
            self._ask_timeouts.add(promise, timeout)
            return await future
        finally:
            promise.release()

    async def stop(self, ref: ActorRef[Any]) -> None:
        """Stop a local actor and wait until it has terminated (children first, hooks run).

        A handler of the actor suspended in an ``await`` is cancelled, and an ask it was
        handling fails with `ActorStopped`. A handler that catches the cancellation and carries
        on delays the stop until it returns: this waits as long, without bound (wrap the call
        in ``asyncio.timeout`` if that matters; cancelling this call does not undo the stop).
        Idempotent. Inside an actor use `ActorContext.stop` instead: awaiting the stop of the
        calling actor, or of one of its ancestors, never returns.

        Raises:
            ActorError: ``ref`` is not an actor of this system, or is a guardian.
        """
        if type(ref) is not LocalActorRef or ref._cell._system is not self:
            raise ActorError(f"{ref!r} is not an actor of system {self._name!r}")
        cell = ref._cell
        if cell._parent is None or cell._parent is self._root:
            raise ActorError(f"{ref.path} is a guardian; use shutdown()")
        await self._stop_cell(cell)

    def resolve(self, address: str) -> ActorRef[Any]:
        """The ref an address string names (what a serializer calls when decoding a ref).

        Accepts full addresses of this system and bare paths (``"/user/a"``). An address that
        names no live actor gives a ref whose messages become dead letters ("unknown
        recipient"); it still compares equal to other refs of that address.
        """
        path = self._local_path(address)
        if path is None:
            return self._resolve_foreign(address)
        found = self._find(path)
        if found is not None:
            return found
        if path.startswith("/temp/"):  # the reply ref of an ask that has ended
            return _DeadRef(self, path, DeadLetterReason.LATE_ASK_REPLY)
        return _DeadRef(self, path, DeadLetterReason.UNKNOWN_RECIPIENT)

    def statistics(self) -> ActorSystemStatistics:
        """A snapshot of the counters (see `ActorSystemStatistics`)."""
        dead_letters = sum(self._dead_letter_reasons.values())
        return ActorSystemStatistics(self._live_actors, dead_letters, len(self._tasks))

    def metrics(self) -> Metrics:
        """A snapshot of this system's counters (see `casty.metrics.Metrics`)."""
        return snapshot(self)

    async def start(self) -> None:
        """Start the system's services; idempotent. A local system needs nothing started, so
        actors can be spawned right after construction; `__aenter__` calls this."""
        if not self._started:
            self._started = True
            await self._start_services()

    async def shutdown(self) -> None:
        """Stop every actor (user actors first, then system actors; children before parents;
        post-stop hooks run; queued messages become dead letters) and await every task the
        system started. Idempotent; concurrent callers all wait for the same shutdown.
        Pending asks fail with `ActorStopped`.

        Stopping the actors and awaiting the tasks is bounded by ``shutdown_timeout``: a
        handler that catches its cancellation and carries on (or a ``pipe_to_self`` awaitable
        that ignores it) would otherwise hang shutdown forever. When the time is up, the tasks
        still running are cancelled once more and abandoned (nothing awaits them any longer),
        an ERROR on the ``casty.actors`` logger names the actors whose handlers are stuck,
        system actors are told to stop without being awaited, and shutdown completes.

        Afterwards `spawn` raises `ResourceClosed` and every tell is a dead letter.
        """
        if self._state != _OPEN:
            await self._shut_down.wait()
            return
        self._state = _SHUTTING_DOWN
        try:
            await self._before_stop_actors()
            await self._stop_actors()
            await self._after_stop_actors()
        finally:
            self._state = _SHUT_DOWN
            self._shut_down.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._address_prefix}>"

    # -- hooks for subclasses -----------------------------------------------------------------

    async def _start_services(self) -> None:
        """Run once by `start` (bind listeners, join a cluster). Nothing for a local system."""

    async def _before_stop_actors(self) -> None:
        """Run by `shutdown` while every actor still runs (leave a cluster gracefully)."""

    async def _after_stop_actors(self) -> None:
        """Run by `shutdown` after every actor stopped and every task ended (close transports)."""

    def _resolve_foreign(self, address: str) -> ActorRef[Any]:
        """The ref for an address that is not this system's. A local system has no peers, so
        the result leads to dead letters ("unknown recipient")."""
        _scheme, sep, rest = address.partition("://")
        path = "/" + rest.partition("/")[2] if sep else address
        return _DeadRef(self, path, DeadLetterReason.UNKNOWN_RECIPIENT, address)

    # -- internals used by cells and refs ------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != _OPEN:
            raise ResourceClosed(f"actor system {self._name!r} is shut down")

    def _local_path(self, address: str) -> str | None:
        if address.startswith("/"):
            return address
        prefix = self._address_prefix
        if address.startswith(prefix) and address.startswith("/", len(prefix)):
            return address[len(prefix) :]
        return None

    def _find(self, path: str) -> ActorRef[Any] | None:
        if path == "/deadLetters":
            return self._dead_letters
        if path.startswith("/temp/"):
            return self._temp.get(path)
        cell: ActorCell[Any] | None = self._root
        for segment in path.split("/"):
            if segment and cell is not None:
                children = cell._children
                cell = None if children is None else children.get(segment)
        return None if cell is None or cell._status == _TERMINATED else cell._ref

    async def _stop_actors(self) -> None:
        """Stop every actor and await every task, within ``shutdown_timeout``."""
        scope = asyncio.timeout(self._shutdown_timeout)
        try:
            async with scope:
                await self._stop_cell(self._user)
                await self._stop_cell(self._system_guardian)
                # Every actor is gone, so no reply can come: pending asks fail now.
                self._fail_pending_asks()
                await self._join_tasks()
        except TimeoutError:
            if not scope.expired():
                raise
            self._abandon()
        self._root._status = _TERMINATED

    def _fail_pending_asks(self) -> None:
        self._ask_timeouts.fail_all(ActorStopped(f"actor system {self._name!r} shut down"))

    def _abandon(self) -> None:
        """Shutdown ran out of time: cancel what still runs once more and stop waiting for it."""
        stuck: list[str] = []  # actors whose handler is suspended (and ignored its cancellation)
        cells: list[ActorCell[Any]] = [self._root]
        while cells:
            cell = cells.pop()
            if cell._task is not None:
                stuck.append(cell._ref.path)
            if cell._children:
                cells.extend(cell._children.values())
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        self._system_guardian._request_stop()
        self._fail_pending_asks()
        log.error(
            "actor system %r: shutdown did not finish within %s s; abandoning %d task(s); "
            "actors stuck in a handler (ignoring cancellation?): %s",
            self._name,
            self._shutdown_timeout,
            len(tasks),
            ", ".join(sorted(stuck)) or "none",
            extra={"actor_paths": sorted(stuck)},
        )

    async def _stop_cell(self, cell: ActorCell[Any]) -> None:
        if cell._status == _TERMINATED:
            return
        future: asyncio.Future[Any] = self._loop.create_future()
        watcher = PromiseRef(self, future)
        cell._ref._watch(watcher, None)
        cell._request_stop()
        try:
            await future
        finally:
            cell._ref._unwatch(watcher)
            watcher.release()

    async def _join_tasks(self) -> None:
        while self._tasks:
            tasks = list(self._tasks)
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)

    def _start_task(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("internal task of %r failed", self, exc_info=task.exception())

    def _actor_spawned(self) -> None:
        self._live_actors += 1

    def _actor_terminated(self, cell: ActorCell[Any]) -> None:
        if cell._parent is not self._root:  # guardians are not counted
            self._live_actors -= 1

    def _wake(self, cell: ActorCell[Any]) -> None:
        """Schedule a run of ``cell`` (marked scheduled): a loop callback, or, while `_woken`
        collects them, a run before the current loop callback returns."""
        woken = self._woken
        if woken is None:
            self._call_soon(cell._run, context=self._context)
        else:
            woken.append(cell)

    def _schedule_woken(self, woken: list[ActorCell[Any]]) -> None:
        """Hand runs collected in `_woken` to whoever would have run them (see `_run_woken`)."""
        for cell in woken:
            self._wake(cell)

    def _run_woken(self, woken: list[ActorCell[Any]]) -> None:
        """Run, here, the actors woken while `_woken` was ``woken``, as the loop would.

        A message to an idle actor schedules the actor's run with ``call_soon``, one loop
        iteration later. A caller that delivers messages from outside any actor (remoting, for
        each batch of frames a connection delivers: `RemoteActorSystem._dispatch_frames`) sets
        `_woken` to a new list, tells, restores `_woken`, then calls this: the actors woken run
        right away, in order, in the system's context, an error reported to the loop's exception
        handler. Only those first runs: an actor that has more left after ``throughput``
        messages, or that a run wakes, is scheduled as usual; a tell from a handler is queued
        (handlers are never re-entered). If telling raised, the caller hands the collected runs
        to `_schedule_woken` instead.
        """
        if not self._can_enter():
            self._schedule_woken(woken)  # we run inside it: leave the runs to the loop
            return
        for cell in woken:
            self._run_reported(cell._run)

    def _run_now(self, ref: LocalActorRef[Any], message: object) -> None:
        """Tell ``message`` to ``ref``, whose actor is idle and running, and run the actor at
        once, here: `_run_woken` for one message, without the mailbox (`ActorCell._run_one`).

        For a caller that delivers one message from outside any actor (remoting, for a frame
        that holds one request: `RemoteActorSystem._dispatch_frames`), with `_woken` restored.
        Inside the system's context, the message is told instead.
        """
        if not self._can_enter():
            ref.tell(message)  # we run inside it: leave the run to the loop
            return
        self._run_reported(ref._cell._run_one, message)

    def _can_enter(self) -> bool:
        """Whether the system's context can be entered here (it is not running this code)."""
        try:
            self._context.run(int)
        except RuntimeError:
            return False
        return True

    def _run_reported(self, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` in the system's context, an error reported to the loop's
        exception handler, as asyncio's ``Handle._run`` would."""
        try:
            self._context.run(callback, *args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": f"Exception in callback {callback!r}", "exception": exc}
            )

    def _dead_letter(
        self,
        message: object,
        recipient: ActorRef[Any],
        reason: str,
        error: CastyError | None = None,
    ) -> None:
        """Publish a dropped message (and fail the asks waiting for a reply to it, if any).

        ``error``: what those asks fail with, for a reason of another layer (sharding) that
        `_undeliverable` does not know; by default the error of ``reason``.
        """
        reasons = self._dead_letter_reasons
        reasons[reason] = reasons.get(reason, 0) + 1
        for promise in reply_promises(message):
            # The request will never be handled, so no reply can come: fail fast.
            failure = error if error is not None else _undeliverable(message, recipient, reason)
            if failure is not None:
                promise.fail(failure)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dead letter to %s (%s): %r", recipient.path, reason, message)
        if type(message) is DeadLetter:
            return  # never a dead letter about a dead letter
        stream = self._event_stream
        if stream._cell._status >= _STOPPING:
            return  # shutting down: the stream cannot deliver, and telling it would recurse
        stream.tell(EventStreamPublish(DeadLetter(message, recipient, reason)))
