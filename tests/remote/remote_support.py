"""Messages, actors and helpers shared by the remoting tests (and their subprocess nodes).

Message classes live here, in a module both the test process and a subprocess node import
under the same name, so their wire names (``module:qualname``) resolve on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from casty.actors import ActorContext, ActorRef, ActorSystem, Behavior, Behaviors
from casty.remote import RemoteActorSystem
from casty.testing import wait_until

WAIT = 5.0  # seconds a test waits for a condition before failing


@dataclass(frozen=True)
class Num:
    n: int


@dataclass(frozen=True)
class Echo:
    text: str
    reply_to: ActorRef[Any]


@dataclass(frozen=True)
class Reply:
    text: str


@dataclass(frozen=True)
class Forward:
    """Tell ``payload`` to ``target`` (a ref that travelled inside this message)."""

    target: ActorRef[Any]
    payload: Any


@dataclass(frozen=True)
class Secret:
    """A message a strict serializer that did not register it cannot decode."""

    text: str


@dataclass(frozen=True)
class Blob:
    data: bytes


def echo_behavior() -> Behavior[Any]:
    """Answers `Echo` with `Reply`, relays `Forward`, ignores the rest."""

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if isinstance(msg, Echo):
            msg.reply_to.tell(Reply(msg.text))
        elif isinstance(msg, Forward):
            msg.target.tell(msg.payload)
        return Behaviors.same()

    return Behaviors.receive(receive)


class Recorder:
    """A real actor that records what it receives; waits are bounded by a deadline."""

    def __init__(self, system: ActorSystem, name: str) -> None:
        self.messages: list[Any] = []
        self.ref: ActorRef[Any] = system.spawn(Behaviors.receive(self._receive), name)

    def _receive(self, ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        self.messages.append(msg)
        return Behaviors.same()

    async def wait_count(self, count: int, timeout: float = WAIT) -> list[Any]:
        await wait_until(lambda: len(self.messages) >= count, timeout, message=f"{count} msgs")
        return self.messages

    def of_type(self, kind: type) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]


class Watcher:
    """An actor that watches the refs it is told (as `Watch`) and records `Terminated`."""

    def __init__(self, system: ActorSystem, name: str) -> None:
        self.events: list[Any] = []
        self.ref: ActorRef[Any] = system.spawn(Behaviors.receive(self._receive), name)

    def _receive(self, ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if isinstance(msg, Watch):
            if msg.stop:
                ctx.unwatch(msg.target)
            else:
                ctx.watch(msg.target)
            self.events.append(("ack", msg.target))
        else:
            self.events.append(msg)
        return Behaviors.same()

    async def watch(self, target: ActorRef[Any]) -> None:
        count = len(self.events)
        self.ref.tell(Watch(target))
        await wait_until(lambda: len(self.events) > count, WAIT)

    async def unwatch(self, target: ActorRef[Any]) -> None:
        count = len(self.events)
        self.ref.tell(Watch(target, stop=True))
        await wait_until(lambda: len(self.events) > count, WAIT)

    def terminated(self) -> list[Any]:
        return [e for e in self.events if not isinstance(e, tuple)]


@dataclass(frozen=True)
class Watch:
    target: ActorRef[Any]
    stop: bool = False


def watched_by(system: RemoteActorSystem) -> int:
    """How many of ``system``'s actors its peers watch."""
    return sum(peer.watched_by for peer in system.remote_statistics().peers)


def connected(system: RemoteActorSystem) -> bool:
    """Whether ``system`` has a peer and every peer is connected."""
    peers = system.remote_statistics().peers
    return bool(peers) and all(peer.connected for peer in peers)


def incarnations(system: RemoteActorSystem) -> list[int | None]:
    """The incarnations ``system`` knows of its peers."""
    return [peer.incarnation for peer in system.remote_statistics().peers]
