"""`ActorContext`: what a behavior can do with its own actor (spawn, stop, watch, ask...)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from casty.actors.behaviors import _SAME, _UNHANDLED, Behavior, Behaviors
from casty.actors.cell import (
    _PIPE,
    _STOPPING,
    _SYS_STOP,
    _UNBOUNDED,
    ActorCell,
    LocalActorRef,
    _Envelope,
)
from casty.actors.ref import ActorRef
from casty.actors.signals import Terminated
from casty.errors import ActorError, ActorStopped, ConfigurationError, InvalidActorName

if TYPE_CHECKING:
    from casty.actors.system import ActorSystem

__all__ = ["ActorContext"]

M = TypeVar("M")
N = TypeVar("N")
R = TypeVar("R")
T = TypeVar("T")

# Names are path segments of "casty://system@host:port/path" addresses: RFC 3986 unreserved
# characters and '%' (so percent-encoded text fits) need no escaping anywhere; '.' and '..'
# are excluded because they mean "here" and "parent" in paths.
_NAME = re.compile(r"[A-Za-z0-9._~%-]+")
_NAME_RULE = (
    "ASCII letters, digits and '-', '_', '.', '~', '%' (not '.' or '..'); "
    "percent-encode anything else, e.g. urllib.parse.quote(text, safe='')"
)


class _ActorLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every message with the actor's path and sets ``record.actor_path``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        given = kwargs.get("extra")
        kwargs["extra"] = extra if given is None else {**given, **extra}
        return f"[{extra.get('actor_path', '')}] {msg}", kwargs


def check_name(name: object) -> str:
    """Validate an actor name.

    Raises:
        InvalidActorName: not a ``str`` made of one or more of the characters in `_NAME_RULE`,
            or ``"."`` or ``".."``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "." or name == "..":
        raise InvalidActorName(f"invalid actor name {name!r}: use {_NAME_RULE}")
    return name


def check_capacity(capacity: int | None) -> int:
    """Validate a mailbox capacity; ``None`` is unbounded.

    Raises:
        ConfigurationError: not ``None`` nor a positive ``int``.
    """
    if capacity is None:
        return _UNBOUNDED
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
        raise ConfigurationError(f"mailbox_capacity must be a positive int, got {capacity!r}")
    return capacity


def check_behavior(behavior: object) -> None:
    """Raises ConfigurationError unless ``behavior`` can start an actor."""
    if not isinstance(behavior, Behavior):
        raise ConfigurationError(f"expected a Behavior, got {behavior!r}")
    if behavior is _SAME or behavior is _UNHANDLED:
        raise ConfigurationError("Behaviors.same() and Behaviors.unhandled() cannot start an actor")


def check_timeout(timeout: float) -> None:
    """Raises ConfigurationError unless ``timeout`` is a positive, finite number of seconds."""
    if not (0 < timeout < math.inf):
        raise ConfigurationError(f"timeout must be positive and finite seconds, got {timeout!r}")


class ActorContext(ActorCell[M]):
    """The actor's own view of itself, passed to every handler and setup factory.

    Use it only from the actor's own handlers, setup and signal handlers (it is not safe to keep
    and call from other tasks). The context object is the actor's runtime; its private members
    are not API.
    """

    __slots__ = ()

    @property
    def self(self) -> ActorRef[M]:
        """This actor's ref."""
        return self._ref

    @property
    def system(self) -> ActorSystem:
        """The actor system this actor lives in."""
        return self._system

    @property
    def name(self) -> str:
        """This actor's name (the last segment of its path)."""
        return self._name

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger adapter on ``casty.actors`` (the actor core's logger, which also logs
        failures): messages start with ``[<actor path>]`` and records carry ``actor_path``."""
        extras = self._x()
        if extras.log is None:
            extras.log = _ActorLog(
                logging.getLogger("casty.actors"), {"actor_path": self._ref.path}
            )
        return extras.log

    @property
    def children(self) -> tuple[ActorRef[Any], ...]:
        """Refs of the children that have not terminated yet (stopping ones included)."""
        children = self._children
        return () if not children else tuple(c._ref for c in children.values())

    def child(self, name: str) -> ActorRef[Any] | None:
        """The child called ``name``, or ``None`` when there is none."""
        children = self._children
        cell = None if children is None else children.get(name)
        return None if cell is None else cell._ref

    def spawn(
        self, behavior: Behavior[N], name: str, *, mailbox_capacity: int | None = None
    ) -> ActorRef[N]:
        """Start a child actor running ``behavior`` at ``<this path>/<name>``.

        The child starts (its setup runs) asynchronously, after this call returns; messages told
        to it meanwhile wait in its mailbox. A child stops when its parent stops, and restarts
        (is stopped and spawned again by the setup) when its parent restarts.

        Args:
            behavior: the child's initial behavior.
            name: one or more ASCII letters, digits, ``-``, ``_``, ``.``, ``~`` and ``%``,
                but not ``.`` or ``..`` (a path segment of an address, so never ``/``, ``@``,
                ``:``, ``?``, ``#``, whitespace or control characters); percent-encode other
                text, e.g. ``urllib.parse.quote(text, safe="")``. Unique among this actor's
                live children (a stopping child keeps its name until it has terminated).
            mailbox_capacity: ``None`` for an unbounded mailbox, else the most queued messages;
                more become dead letters ("mailbox full").

        Raises:
            InvalidActorName: malformed name, or a live child has it.
            ConfigurationError: ``behavior`` or ``mailbox_capacity`` is invalid.
            ActorStopped: this actor is stopping.
        """
        return self._spawn(behavior, name, mailbox_capacity)

    def _spawn(
        self, behavior: Behavior[N], name: str, mailbox_capacity: int | None
    ) -> LocalActorRef[N]:
        check_name(name)
        check_behavior(behavior)
        defaults = self._system._user_defaults
        if defaults is not None and self._ref.path.startswith("/user"):
            if mailbox_capacity is None:
                mailbox_capacity = defaults[0]
            if defaults[1] is not None:  # outermost: the actor's own supervise wins
                behavior = Behaviors.supervise(behavior, defaults[1])
        capacity = check_capacity(mailbox_capacity)
        if self._status >= _STOPPING:
            raise ActorStopped(f"{self._ref.path} is stopping; cannot spawn {name!r}")
        children = self._children
        if children is None:
            children = self._children = {}
        elif name in children:
            raise InvalidActorName(f"an actor named {name!r} already exists in {self._ref.path}")
        parent_path = self._ref.path
        path = f"{parent_path}{name}" if parent_path.endswith("/") else f"{parent_path}/{name}"
        cell: ActorContext[N] = ActorContext(self._system, self, name, path, behavior, capacity)
        children[name] = cell
        self._system._actor_spawned()
        cell._schedule()
        return cell._ref

    def stop(self, ref: ActorRef[Any]) -> None:
        """Stop a child, or this actor itself.

        Asynchronous: the child stops its own children first, then runs its post-stop hooks; a
        handler of the child suspended in an ``await`` is cancelled. Watch the child to learn
        when it has terminated. ``ctx.stop(ctx.self)`` stops this actor after the current
        message (like returning ``Behaviors.stopped()``). Idempotent; a child that already
        terminated is ignored.

        Raises:
            ActorError: ``ref`` is neither this actor nor one of its children.
        """
        if ref == self._ref:
            self._enqueue_sys(_SYS_STOP, None)
            return
        if type(ref) is LocalActorRef and ref._cell._parent is self:
            ref._cell._request_stop()
            return
        raise ActorError(f"{ref.path} is not a child of {self._ref.path}")

    def watch(self, ref: ActorRef[Any], message: object = None) -> None:
        """Receive ``Terminated(ref)`` (or ``message`` when given) once ``ref`` has stopped.

        The notice arrives through the mailbox, after every message ``ref`` sent to this actor
        before stopping. Watching an actor that already stopped delivers the notice at once.
        Watching again replaces the notice. Watches end when this actor stops.
        """
        notice = Terminated(ref) if message is None else message
        extras = self._x()
        if extras.watching is None:
            extras.watching = set()
        extras.watching.add(ref)
        ref._watch(self._ref, notice)

    def unwatch(self, ref: ActorRef[Any]) -> None:
        """Stop watching ``ref``: no notice is delivered afterwards, even one already queued.

        Idempotent.
        """
        extras = self._extras
        if extras is not None and extras.watching is not None:
            extras.watching.discard(ref)
        ref._unwatch(self._ref)

    async def ask(
        self,
        target: ActorRef[T],
        factory: Callable[[ActorRef[Any]], T],
        timeout: float = 5.0,
    ) -> Any:
        """Send ``factory(reply_to)`` to ``target`` and return the first reply to ``reply_to``.

        The handler suspends while it waits (the actor handles no other message meanwhile).
        See `ActorSystem.ask` for the errors.
        """
        return await self._system.ask(target, factory, timeout=timeout)

    def pipe_to_self(
        self,
        awaitable: Awaitable[T],
        map_result: Callable[[T | None, BaseException | None], M],
    ) -> None:
        """Await ``awaitable`` in a task and send ``map_result(value, error)`` to this actor.

        Exactly one of ``value`` / ``error`` is meaningful: on success ``map_result(value,
        None)``, on an exception ``map_result(None, exc)``. ``map_result`` runs inside this
        actor when the result reaches the head of the mailbox, so an exception it raises is
        supervised. The task belongs to this actor: stopping the actor cancels it (and no
        message is sent). On a stopping actor this does nothing (a coroutine is closed).
        """
        if self._status >= _STOPPING:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            return
        task = self._system._start_task(self._pipe(awaitable, map_result))
        extras = self._x()
        if extras.tasks is None:
            extras.tasks = set()
        tasks = extras.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _pipe(
        self,
        awaitable: Awaitable[T],
        map_result: Callable[[T | None, BaseException | None], M],
    ) -> None:
        try:
            value = await awaitable
        except Exception as exc:
            envelope = _Envelope(_PIPE, map_result, None, exc)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our actor stopped
            envelope = _Envelope(_PIPE, map_result, None, exc)
        else:
            envelope = _Envelope(_PIPE, map_result, value, None)
        self._enqueue_envelope(envelope)
