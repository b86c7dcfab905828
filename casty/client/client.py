"""`ClusterClient`: send to sharded entities from a process that is not a cluster member."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, final

from casty.abc import Address
from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.actors.events import EventStreamSubscribe
from casty.actors.ref import ActorRef
from casty.actors.timers import TimerScheduler
from casty.client.routing import ClientRouting, ClientStatistics
from casty.cluster.events import TopologySnapshot
from casty.cluster.protocol import SubscribeTopology, UnsubscribeTopology
from casty.cluster.system import TOPOLOGY_PATH
from casty.errors import ConfigurationError, ConnectFailed, HandshakeFailed, ResourceClosed
from casty.remote.address import ActorAddress
from casty.remote.events import PeerConnected, PeerDisconnected, PeerEvent, PeerLost
from casty.remote.system import RemoteActorSystem
from casty.sharding.messages import ShardEnvelope

if TYPE_CHECKING:
    from casty.distributed import Distributed

__all__ = ["ClientShardRef", "ClusterClient"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _HalfOpen:
    """Timer message: let envelopes try ``node`` again."""

    node: Address


@final
class ClientShardRef(ActorRef[ShardEnvelope]):
    """A sharded type seen from a `ClusterClient`: `tell` routes each `ShardEnvelope` itself.

    The shard comes from `casty.sharding.shard_id_for` (the same hash as the members'), and the
    envelope goes straight to the region of the node the latest `TopologySnapshot` names as
    the shard's owner. See `ClusterClient` for what happens when there is none.
    """

    __slots__ = ("_client", "_namespace", "_num_shards", "_type_name")

    def __init__(
        self, client: ClusterClient, type_name: str, num_shards: int, namespace: str = "user"
    ) -> None:
        self._client = client
        self._type_name = type_name
        self._num_shards = num_shards
        # "system" for the regions spawned as system actors (the coordination types).
        self._namespace = namespace

    @property
    def path(self) -> str:
        return f"/{self._namespace}/{self._type_name}"

    @property
    def address(self) -> str:
        return f"casty-client://{self._client.system_name}{self.path}"

    def tell(self, message: ShardEnvelope) -> None:
        self._client._routing.route(self._type_name, self._num_shards, message, self._namespace)


@final
class ClusterClient:
    """An external client of a cluster: routes `ShardEnvelope`s to the owning nodes.

    It does not join the cluster. It runs a small `RemoteActorSystem` on port 0, subscribes to
    the topology actor (``/system/cluster``) of one contact point, and keeps the latest
    `TopologySnapshot` (members, reachability, shard homes) for its whole life::

        async with ClusterClient(
            cluster_host="10.0.0.1", cluster_port=25520, system_name="task-queue"
        ) as client:
            tasks = await client.shard_ref("tasks", num_shards=256)
            tasks.tell(ShardEnvelope("queue:emails", SubmitTask(send_welcome, reply_to)))
            result = await client.ask(tasks, lambda r: ShardEnvelope("a", Get(r)), timeout=5.0)

    Routing, per envelope: the shard's owner in the snapshot gets it (no proxy hop; replies to
    a ``reply_to`` of the client come straight back over the client's connection). When the
    snapshot names no live owner (the shard was never allocated, or its node was downed or
    removed), the envelope goes to the region of another usable member, which asks the
    coordinator and allocates the shard (one extra hop until the next snapshot names the
    owner). When no member can take it (before the first snapshot, owner unreachable or its
    breaker open), it waits in a bounded buffer (``buffer_size``, shared by all types) that is
    routed again on every snapshot and breaker change; a full buffer turns further envelopes
    into `DeadLetter`s on the client's event stream, with the reason.

    Circuit breaker: when the connection to a node drops or the node is declared lost, the
    client stops sending to it until a snapshot shows the node changed (status, reachability,
    incarnation), the connection comes back, or ``breaker_reset`` seconds pass (half-open: the
    next envelopes try the node again, and the cluster has usually marked a dead node
    unreachable by then, which keeps its shards buffered). When the contact point's connection
    drops, the client subscribes to the next one: the usable members of the latest snapshot
    first, then the configured contact points, round robin.

    Args:
        cluster_host: host of the first contact point (a member's host).
        cluster_port: its port.
        system_name: the cluster's system name.
        contact_points: more contact points, ``"host:port"`` strings or `Address` values.
        transport: transport URL or instance, as for members (``"tls://?cert=..&key=..&ca=.."``).
        serializer: the members' serializer name (``"msgpack"`` or ``"pickle"``).
        host: the client's own host, as the members will reach it (replies, snapshots).
        buffer_size: envelopes held at most while no member can take them (>= 1).
        connect_timeout: seconds to wait for a first snapshot from each contact point in turn;
            one that refuses the connection or the handshake is skipped at once.
        breaker_reset: seconds after which an open breaker half-opens without a topology change.

    Raises:
        ConfigurationError: bad arguments.
        ConnectFailed: (from ``__aenter__``) no contact point sent a snapshot; the message
            gives each one's reason (``connection refused``, ``handshake refused: <why>``,
            ``timed out``), as `contact_failures` does.
    """

    def __init__(
        self,
        cluster_host: str | None = None,
        cluster_port: int | None = None,
        system_name: str = "casty",
        contact_points: Sequence[str | Address] | None = None,
        *,
        transport: Any = "tcp://",
        serializer: Any = "msgpack",
        host: str = "127.0.0.1",
        buffer_size: int = 10_000,
        connect_timeout: float = 5.0,
        breaker_reset: float = 5.0,
    ) -> None:
        contacts: list[Address] = []
        if cluster_host is not None or cluster_port is not None:
            if not isinstance(cluster_host, str) or type(cluster_port) is not int:
                raise ConfigurationError("cluster_host must be a str and cluster_port an int")
            contacts.append(Address(cluster_host, cluster_port))
        for point in contact_points or ():
            contacts.append(point if isinstance(point, Address) else _parse(point))
        if not contacts:
            raise ConfigurationError("a ClusterClient needs at least one contact point")
        if type(buffer_size) is not int or buffer_size < 1:
            raise ConfigurationError(f"buffer_size must be an int >= 1, got {buffer_size!r}")
        for option, value in (
            ("connect_timeout", connect_timeout),
            ("breaker_reset", breaker_reset),
        ):
            if not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ConfigurationError(f"{option} must be a positive number, got {value!r}")
        self.system_name = system_name
        self._contacts = list(dict.fromkeys(contacts))
        self._connect_timeout = connect_timeout
        self._breaker_reset = breaker_reset
        self._system = RemoteActorSystem(
            system_name, host=host, port=0, transport=transport, serializer=serializer
        )
        self._routing = ClientRouting(
            system_name, self._system.resolve, self._dead_letter, buffer_size
        )
        self._listener: ActorRef[Any] | None = None
        self._first = asyncio.Event()
        self._rotation = 0
        self._failures: dict[Address, str] = {}
        self._open = False
        self._distributed: Distributed | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> ClusterClient:
        await self._system.__aenter__()
        try:
            self._listener = self._system.spawn(
                Behaviors.with_timers(self._listening), "cluster-client"
            )
            self._system.event_stream.tell(EventStreamSubscribe(PeerEvent, self._listener))
            for contact in self._contacts:
                failure = await self._first_snapshot(contact)
                if failure is None:
                    break
                self._failures[contact] = failure
                log.warning("cluster client: %s skipped (%s)", contact, failure)
            else:
                reasons = "; ".join(f"{c}: {r}" for c, r in self._failures.items())
                raise ConnectFailed(
                    f"no contact point of {self.system_name!r} sent a topology: {reasons}"
                )
        except BaseException:
            await self._system.shutdown()
            raise
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Unsubscribe, dead-letter the buffered envelopes and stop the client; idempotent."""
        if not self._open:
            return
        self._open = False
        contact = self._routing.contact
        if contact is not None and self._listener is not None:
            self._topology(contact).tell(UnsubscribeTopology(self._listener))
        self._routing.drain("the cluster client closed")
        await self._system.shutdown()

    # -- public API -----------------------------------------------------------------------

    @property
    def system(self) -> RemoteActorSystem:
        """The client's own actor system (spawn reply actors here; its refs reach the cluster)."""
        return self._system

    @property
    def topology(self) -> TopologySnapshot | None:
        """The latest snapshot (None only before ``__aenter__`` returns)."""
        return self._routing.snapshot

    @property
    def contact_failures(self) -> Mapping[Address, str]:
        """Why ``__aenter__`` skipped each contact point it tried before the one that answered
        (``"connection refused"``, ``"handshake refused: <why>"``, ``"timed out ..."``)."""
        return MappingProxyType(self._failures)

    def statistics(self) -> ClientStatistics:
        """Counts of routed, re-routed, buffered and dropped envelopes, and open breakers."""
        return self._routing.statistics()

    async def shard_ref(self, name: str, num_shards: int = 256) -> ClientShardRef:
        """A ref for sharded type ``name``; ``num_shards`` must equal the members' value.

        Raises:
            ConfigurationError: a bad name or shard count.
            ResourceClosed: the client is not open.
        """
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigurationError(f"a sharded type name must be a plain name, got {name!r}")
        if type(num_shards) is not int or not 1 <= num_shards <= 2**32:
            raise ConfigurationError(f"num_shards must be within 1..2**32, got {num_shards!r}")
        if not self._open:
            raise ResourceClosed("the cluster client is not open")
        return ClientShardRef(self, name, num_shards)

    async def ask(
        self,
        ref: ActorRef[Any],
        factory: Callable[[ActorRef[T]], Any],
        *,
        timeout: float = 5.0,
    ) -> T:
        """Tell ``factory(reply_to)`` to ``ref`` and return the first reply.

        ``reply_to`` is a temporary ref of the client's system, reachable from every member.

        Raises:
            AskTimeout: no reply within ``timeout`` seconds.
            ResourceClosed: the client is not open.
        """
        if not self._open:
            raise ResourceClosed("the cluster client is not open")
        reply: T = await self._system.ask(ref, factory, timeout=timeout)
        return reply

    def distributed(self) -> Distributed:
        """The coordination facade over the cluster (locks, semaphores, barriers, counters,
        maps, sets, queues): the same `casty.distributed.Distributed` API as a member's, its
        requests routed straight to the owning members. One per client.

        Raises:
            ResourceClosed: the client is not open.
        """
        if not self._open:
            raise ResourceClosed("the cluster client is not open")
        if self._distributed is None:
            from casty.distributed import Distributed  # the client does not need it otherwise

            self._distributed = Distributed(self)
        return self._distributed

    # -- internals ------------------------------------------------------------------------

    async def _first_snapshot(self, contact: Address) -> str | None:
        """Subscribe via ``contact`` and wait for its first snapshot; ``None``, or why not.

        Connecting first (giving up at a refused connection or handshake) spares the wait
        for a snapshot that cannot come.
        """
        timeout = self._connect_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._system.associate(contact, timeout=timeout, fail_fast=True)
                self._subscribe(contact)
                await self._first.wait()
        except TimeoutError:
            return f"timed out (no topology within {timeout} s)"
        except HandshakeFailed as exc:
            text = str(exc)
            refused = f"{contact} refused the handshake: "
            if text.startswith(refused):
                return "handshake refused: " + text.removeprefix(refused)
            return f"handshake failed: {text}"  # TLS, or no answer
        except ConnectFailed as exc:
            return str(exc).removeprefix(f"cannot connect to {contact}: ")
        return None

    def _listening(self, timers: TimerScheduler[Any]) -> Behavior[Any]:
        def on(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if isinstance(msg, TopologySnapshot):
                self._routing.on_snapshot(msg)
                self._first.set()
            elif isinstance(msg, PeerConnected):
                self._routing.reset(msg.address)
            elif isinstance(msg, _HalfOpen):
                self._routing.reset(msg.node)
            elif isinstance(msg, PeerDisconnected | PeerLost):
                self._routing.trip(msg.address)
                # A connection dropped by a glitch is not re-dialled while nothing is sent, so
                # the breaker also half-opens after a while even without a topology change.
                key = ("half-open", msg.address)
                timers.start_single_timer(key, _HalfOpen(msg.address), self._breaker_reset)
                if msg.address == self._routing.contact:
                    self._rotate(msg.address)
            return Behaviors.same()

        return Behaviors.receive(on)

    def _rotate(self, failed: Address) -> None:
        candidates = [m for m in self._routing.members() if m != failed]
        candidates += [c for c in self._contacts if c != failed and c not in candidates]
        if not candidates:
            candidates = [failed]  # nothing else known: keep trying the same node
        self._rotation += 1
        following = candidates[self._rotation % len(candidates)]
        log.info("cluster client: contact point %s lost, subscribing via %s", failed, following)
        self._subscribe(following)

    def _subscribe(self, contact: Address) -> None:
        assert self._listener is not None
        self._routing.contact = contact
        self._topology(contact).tell(SubscribeTopology(self._listener))

    def _topology(self, node: Address) -> ActorRef[Any]:
        root = ActorAddress.of_node(self.system_name, node).root
        return self._system.resolve(f"{root}{TOPOLOGY_PATH}")

    def _dead_letter(self, message: object, reason: str) -> None:
        recipient = self._listener if self._listener is not None else self._system.dead_letters
        self._system._dead_letter(message, recipient, reason)


def _parse(point: str) -> Address:
    try:
        address: Address | None = Address.parse(point)
    except (AttributeError, TypeError, ValueError):  # not a string, or no port
        address = None
    if address is None or not address.host:
        raise ConfigurationError(f"a contact point reads 'host:port', got {point!r}")
    return address
