"""`RemoteActorRef`: a ref to an actor on another node, and the proxy a remote watcher leaves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, final

from casty.actors.ref import ActorRef

if TYPE_CHECKING:
    from casty.remote.association import Association

__all__ = ["RemoteActorRef"]

M_contra = TypeVar("M_contra", contravariant=True)


@final
class RemoteActorRef(ActorRef[M_contra]):
    """A ref to an actor of another node, obtained from `ActorSystem.resolve` or by decoding a
    message (a ``reply_to``), never built directly.

    `tell` encodes nothing itself: it queues the message on the peer's association, which
    encodes what was told during one event-loop turn in one pass and sends it in as few frames
    as possible (the first message of a turn to an idle peer leaves at once). Messages told to
    one peer arrive in the order they were told; delivery is at most once (see
    ``docs/remoting.md``). Undeliverable messages become dead letters with a
    `RemoteDeadLetterReason`. Watching a remote ref works like watching a local one: the peer
    reports the actor's stop, and losing the peer node reports it too.
    """

    __slots__ = ("_address", "_association", "_path")

    def __init__(self, association: Association, path: str, address: str) -> None:
        self._association = association
        self._path = path
        self._address = address

    @property
    def path(self) -> str:
        return self._path

    @property
    def address(self) -> str:
        return self._address

    def tell(self, message: M_contra) -> None:
        self._association.tell(self, message)

    def _watch(self, watcher: ActorRef[Any], notice: object) -> None:
        self._association.watch(self, watcher, notice)

    def _unwatch(self, watcher: ActorRef[Any]) -> None:
        self._association.unwatch(self, watcher)


@final
class WatcherProxy(ActorRef[Any]):
    """Stands, in a local actor's watcher list, for a peer node that watches the actor.

    When the actor stops, `_notify_terminated` queues the notice for the peer, behind every
    message the actor sent it before stopping.
    """

    __slots__ = ("_association", "_path")

    def __init__(self, association: Association, path: str) -> None:
        self._association = association
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    @property
    def address(self) -> str:
        return f"{self._association.root}/$watch{self._path}"

    def tell(self, message: Any) -> None:
        """Never called by the actor core; anything told is dropped as a dead letter."""
        self._association.system.dead_letters.tell(message)

    def _notify_terminated(self, subject: ActorRef[Any], notice: object) -> None:
        self._association.watched_actor_stopped(self)

    # One proxy per (peer, path), found by identity in the association's table.
    __eq__ = object.__eq__
    __hash__ = object.__hash__
