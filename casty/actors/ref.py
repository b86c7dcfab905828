"""`ActorRef`: the handle used to send messages to an actor, wherever it lives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar, cast

__all__ = ["ActorRef"]

M_contra = TypeVar("M_contra", contravariant=True)


class ActorRef(ABC, Generic[M_contra]):
    """Where to send messages of type ``M``: a local actor, a reply promise, a remote actor.

    `tell` never blocks and never raises for delivery problems: a message that cannot be
    delivered (stopped recipient, full mailbox, unknown address) becomes a `DeadLetter` on the
    event stream. Refs compare and hash by `address`, so a ref decoded from the wire equals the
    one it was encoded from. A ref stays valid after its actor stopped; it then leads to dead
    letters.

    Implementing: `path`, `address` and `tell` are required. A ref kind that supports death
    watch (a remote ref, say) overrides the three hooks `_watch`, `_unwatch` and
    `_notify_terminated`; the defaults treat the ref as pointing at nothing alive (watching it
    reports `Terminated` at once) and deliver termination notices with `tell`.
    """

    __slots__ = ()

    @property
    @abstractmethod
    def path(self) -> str:
        """The actor's path inside its system, e.g. ``"/user/parent/child"``."""

    @property
    @abstractmethod
    def address(self) -> str:
        """The full address: ``"casty://<system>/user/a"`` for a local-only system,
        ``"casty://<system>@<host>:<port>/user/a"`` once the system is reachable remotely."""

    @abstractmethod
    def tell(self, message: M_contra) -> None:
        """Enqueue ``message`` for the actor and return at once (fire and forget).

        Messages from one sender to one recipient arrive in the order they were told. Never
        raises for delivery problems (see the class docstring). Safe to call from any task and
        from callbacks on the event loop's thread.
        """

    # -- death-watch hooks (the extension surface for other ref kinds) -------------------------

    def _watch(self, watcher: ActorRef[Any], notice: object) -> None:
        """Register ``watcher`` to receive ``notice`` when this ref's actor stops."""
        watcher._notify_terminated(self, notice)

    def _unwatch(self, watcher: ActorRef[Any]) -> None:
        """Undo `_watch`; harmless when ``watcher`` is not registered."""

    def _notify_terminated(self, subject: ActorRef[Any], notice: object) -> None:
        """Deliver ``notice``: ``subject``, which this ref watches, has stopped."""
        cast("ActorRef[Any]", self).tell(notice)

    # -- identity ----------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, ActorRef):
            return NotImplemented
        return self.path == other.path and self.address == other.address

    def __hash__(self) -> int:
        # Equal addresses imply equal paths, and the path is cheap for every ref kind.
        return hash(self.path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"
