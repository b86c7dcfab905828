"""Messages, actors and helpers shared by the remoting tests (and their subprocess nodes).

Message classes live here, in a module both the test process and a subprocess node import
under the same name, so their wire names (``module:qualname``) resolve on both sides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casty.abc import Address
from casty.actors import ActorContext, ActorRef, ActorSystem, Behavior, Behaviors
from casty.certs import CertificateFiles
from casty.remote import RemoteActorSystem, RemoteSettings
from casty.remote.envelope import Hello
from casty.testing import wait_until
from casty.transports.tls import TLSTransport

WAIT = 5.0  # seconds a test waits for a condition before failing

#: Short timeouts so failure paths finish quickly; each test may override them.
FAST = RemoteSettings(
    handshake_timeout=1.0,
    failure_timeout=1.0,
    min_backoff=0.02,
    max_backoff=0.2,
    heartbeat_interval=0.05,
    acceptable_heartbeat_pause=0.1,
    phi_threshold=3.0,
    shutdown_flush_timeout=0.5,
)

MakeSystem = Callable[..., Awaitable[RemoteActorSystem]]


def hello(
    to: Address,
    *,
    host: str = "127.0.0.1",
    port: int = 1,
    incarnation: int = 77,
    system: str = "t",
) -> Hello:
    """The HELLO a raw peer at ``host:port`` sends to the node at ``to`` (msgpack, 1 MiB)."""
    return Hello(system, host, port, incarnation, to.host, to.port, "msgpack", 1 << 20)


@dataclass(frozen=True)
class Pki:
    """A throwaway cluster CA (built with `casty.certs`) and two node certificates."""

    ca: Path
    node_a: CertificateFiles
    node_b: CertificateFiles
    foreign_ca: Path
    foreign: CertificateFiles

    def transport(self, files: CertificateFiles, ca: Path | None = None) -> TLSTransport:
        return TLSTransport(files.cert, files.key, ca or self.ca, handshake_timeout=1.0)


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


#: The ``dead_letters`` fixture: subscribe a `Recorder` to a system's dead letters.
DeadLetters = Callable[[ActorSystem], Recorder]


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
