"""`ClusteredActorSystem`: a remote actor system that is a member of a cluster."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

from casty.abc import Address, Discovery, Journal, Serializer, Transport
from casty.actors.ref import ActorRef
from casty.clock import Clock
from casty.cluster.config import ClusterConfig
from casty.cluster.daemon import TopologySettings, topology_behavior
from casty.cluster.facade import Cluster
from casty.cluster.member import UniqueAddress
from casty.discovery import as_discovery
from casty.errors import ClusterError, ConfigurationError, NodeDowned, QuorumNotReached
from casty.logs import node_started
from casty.remote import ActorAddress, RemoteActorSystem, RemoteSettings

if TYPE_CHECKING:
    from casty.config import CastyConfig
    from casty.distributed import Distributed

__all__ = ["TOPOLOGY_PATH", "ClusteredActorSystem"]

log = logging.getLogger("casty.cluster")

#: Where the topology actor lives on every node.
TOPOLOGY_PATH = "/system/cluster"

SeedNode = Address | tuple[str, int] | str


class ClusteredActorSystem(RemoteActorSystem):
    """An actor system that joins a cluster when it starts and leaves it when it stops.

    Every node runs the same code; any node can be the first. ``async with`` starts the node,
    joins (or founds) the cluster, and returns once this node is ``up``, or, with
    ``required_quorum=N``, once N members are ``up``::

        async with ClusteredActorSystem(
            name="task-queue", host="10.0.0.1", port=25520, node_id="worker-1",
            seed_nodes=[("10.0.0.2", 25520), ("10.0.0.3", 25520)],
            required_quorum=3,
        ) as system:
            # The members already up arrive as MemberUp events first, then every later one.
            system.cluster.subscribe(ref, MemberUp, initial_state_as_events=True)
            print(system.cluster.members)

    Leaving the block leaves the cluster gracefully (``leaving → exiting → removed``, exit
    hooks included, bounded by ``ClusterConfig.leave_timeout``) and then stops the actors and
    the transport.

    **Seeds and the first node.** Seeds come from ``discovery`` (a `Discovery`, a URL such as
    ``"dns+srv://_casty._tcp.example.internal"``, or a function returning seeds) or from
    ``seed_nodes`` (a static list); they are resolved again on every join round. A node asks
    the seeds whether they belong to a cluster and joins through the first member that
    answers. The *first seed* (the lowest address among the seeds the nodes know; see
    `casty.cluster.seeds`) founds a new cluster when every other seed answered that it is not
    a member, or after ``JoinConfig.seed_node_timeout`` when some stay silent; every other
    node keeps asking, with backoff, and says why in a "still joining" warning at most once
    per ``JoinConfig.log_interval``. A seed that refuses this node's handshake (another
    system name or serializer) is logged once and skipped; the others carry on.

    Omitting both ``seed_nodes`` and ``discovery`` founds a one-node cluster at once. An
    explicitly empty ``seed_nodes=[]``, like a discovery that finds nobody, is a list with no
    seed *yet*: the node keeps resolving and asking, with backoff, and logs "no seed nodes
    known" at a calm rate (bound the wait with ``ClusterConfig.join_timeout``). Seeds must be
    written with the host each node advertises (``host=``).

    **Membership** follows Akka Cluster: gossip with vector clocks and convergence, a leader
    that moves members ``joining → up`` and ``leaving → exiting → removed``, phi accrual failure
    detection on a bounded ring, and a split brain resolver (`DowningConfig`). Events
    (`MemberUp`, `MemberLeft`, `MemberRemoved`, `UnreachableMember`, `ReachableMember`,
    `LeaderChanged`, ...) are published once per change on ``system.event_stream``;
    `system.cluster` reads this node's view; the topology actor (``/system/cluster``) pushes
    a `TopologySnapshot` to subscribers (`SubscribeTopology`) on every change.

    **Downed.** When this node is downed (its split brain resolver decided its side goes, or
    the cluster marked it down), it publishes its own `MemberRemoved`, stops serving
    (``system.cluster.is_downed``; `Cluster.raise_if_downed` raises `NodeDowned`) and answers
    nobody; the survivors remove it and quarantine its incarnation in remoting. The actor
    system itself keeps running until the ``async with`` block ends.

    Args:
        name: the actor system's name; every node of a cluster uses the same one.
        host: the host to bind and advertise (an address peers can reach).
        port: the port to bind; 0 picks a free one (see `node_address`).
        node_id: the operator's name for this node (``member.node_id``); defaults to
            ``"host:port"``.
        seed_nodes: seeds as `Address`, ``(host, port)`` or ``"host:port"``; this node may be
            among them. Give this or ``discovery``, not both. ``None`` (omitted, and no
            discovery): found a one-node cluster at once; ``[]``: keep looking (see above).
        required_quorum: ``__aenter__`` waits until this many members are ``up`` (>= 1).
        transport: a `Transport` or its URL (``"tcp://"``, ``"tls://..."``, ``"memory://"``).
        serializer: a `Serializer` or its name; every node uses the same one.
        discovery: a `Discovery`, its URL, or a function returning seeds.
        roles: this node's roles (``member.roles``).
        config: the cluster settings (`ClusterConfig`), or a whole node's configuration: a
            `casty.config.CastyConfig`, the path of a ``casty.toml`` or a dict shaped like one
            (read with `casty.config.load_config`, ``CASTY_*`` variables included). Then
            every argument left at its default takes the configuration's value, and the
            configuration also sets the node's journal, mailbox and supervision defaults,
            sharding and replication defaults and the Prometheus endpoint.
        incarnation: this start's identity (random when ``None``); a restarted node gets a new
            one, so the cluster replaces its old self.
        remote_settings: remoting's settings (`RemoteSettings`).
        clock: the clock of every timer (the failure detector and resolver included).
        throughput: as for `ActorSystem`.

    Raises:
        ConfigurationError: a bad argument (``__aenter__`` may raise the errors below).

    ``__aenter__`` raises `JoinRefused` when no seed can let this node in: every seed refused
    its handshake (another system name or serializer) or could not be reached, with at least
    one refusal, and this node is no seed itself; or when a member of this system refuses it
    for the whole cluster (another cluster protocol version, or this incarnation was removed),
    which fails at once since every member would answer the same. The reason is logged on
    both sides. It raises `QuorumNotReached` when this node (``join_timeout``) or the quorum
    (``quorum_timeout``) is not up in time, and `ConnectFailed` when the address cannot be
    bound; the system is shut down before it raises.
    """

    def __init__(
        self,
        name: str = "casty",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        node_id: str | None = None,
        seed_nodes: Iterable[SeedNode] | None = None,
        required_quorum: int | None = None,
        transport: Transport | str = "tcp://",
        serializer: Serializer | str = "msgpack",
        discovery: Discovery | str | Any = None,
        roles: Iterable[str] = (),
        config: (
            ClusterConfig | CastyConfig | str | os.PathLike[str] | Mapping[str, Any] | None
        ) = None,
        incarnation: int | None = None,
        remote_settings: RemoteSettings | None = None,
        clock: Clock | None = None,
        throughput: int = 300,
    ) -> None:
        if config is not None and not isinstance(config, ClusterConfig):
            from casty.config.apply import apply_node_config, system_arguments

            node_config, arguments = system_arguments(config, locals())
            ClusteredActorSystem.__init__(self, **arguments)
            apply_node_config(self, node_config)
            return
        super().__init__(
            name,
            host=host,
            port=port,
            transport=transport,
            serializer=serializer,
            incarnation=incarnation,
            settings=remote_settings,
            clock=clock,
            throughput=throughput,
        )
        if node_id is not None and (not isinstance(node_id, str) or not node_id):
            raise ConfigurationError(f"node_id must be a non-empty string, got {node_id!r}")
        if required_quorum is not None and (
            isinstance(required_quorum, bool)
            or not isinstance(required_quorum, int)
            or required_quorum < 1
        ):
            raise ConfigurationError(
                f"required_quorum must be an int >= 1, got {required_quorum!r}"
            )
        if config is not None and not isinstance(config, ClusterConfig):
            raise ConfigurationError(f"config must be a ClusterConfig, got {config!r}")
        if isinstance(roles, str):
            raise ConfigurationError(f"roles is a collection of names, got the string {roles!r}")
        role_set = frozenset(roles)
        if any(not isinstance(role, str) or not role for role in role_set):
            raise ConfigurationError(
                f"roles must be non-empty strings, got {sorted(map(repr, role_set))}"
            )
        self._node_id = node_id
        self._roles = role_set
        self._required_quorum = required_quorum
        self._config = config if config is not None else ClusterConfig()
        self._discovery, self._owns_discovery = _seed_source(seed_nodes, discovery)
        self._cluster: Cluster | None = None
        self._topology_refs: dict[Address, ActorRef[Any]] = {}
        self._leave_on_shutdown = True
        self._distributed: Distributed | None = None
        self._node_config: CastyConfig | None = None  # set by a whole configuration
        self._journal: Journal | None = None
        self._prometheus: Any = None

    # -- public API ---------------------------------------------------------------------------

    @property
    def cluster(self) -> Cluster:
        """This node's view of the cluster (members, leader, leaving, waiting).

        Raises:
            ClusterError: the system has not started yet.
        """
        if self._cluster is None:
            raise ClusterError("the cluster is joined when the system starts (async with)")
        return self._cluster

    @property
    def cluster_config(self) -> ClusterConfig:
        """The cluster settings in force."""
        return self._config

    @property
    def configuration(self) -> CastyConfig:
        """The node's whole configuration (`casty.config.CastyConfig`) as given to ``config=``;
        without one, the defaults (the system then runs with its arguments and
        `cluster_config`, and this supplies the sharding, replication and metrics defaults)."""
        if self._node_config is None:
            from casty.config import CastyConfig

            self._node_config = CastyConfig()
        return self._node_config

    @property
    def journal(self) -> Journal | None:
        """The node's journal (``[journal] url``), open while the system runs; else None."""
        return self._journal

    @property
    def self_node(self) -> UniqueAddress:
        """This node's address and incarnation (known once started)."""
        return UniqueAddress(self.node_address, self.incarnation)

    def distributed(self, **options: Any) -> Distributed:
        """The coordination facade (locks, semaphores, barriers, counters, maps, sets, queues);
        see `casty.distributed.Distributed`, whose keyword options (``journal``,
        ``replication``, ``lock_ttl``, ``timeout``, ``roles``) the first call takes.

        The first call spawns this node's regions of the internal sharded types; later calls
        return the same facade. Call it on every member that should host coordination entities.

        Raises:
            ResourceClosed: the system is stopped.
            ConfigurationError: a bad option, or options given after the facade was created.
        """
        if self._distributed is None:
            from casty.distributed import Distributed  # the cluster does not need it otherwise

            self._distributed = Distributed(self, **options)
        elif options:
            raise ConfigurationError(
                "system.distributed() takes its options on the first call only"
            )
        return self._distributed

    async def barrier(self, name: str, n: int, *, timeout: float = 60.0) -> int:
        """Wait until ``n`` participants reached barrier ``name``; see `Distributed.barrier`.

        Raises:
            BarrierBroken: the timeout passed or a waiting participant's node was downed.
            ConfigurationError: a bad argument.
        """
        return await self.distributed().barrier(name, n, timeout=timeout)

    async def leave(self, timeout: float | None = None) -> bool:
        """Leave the cluster gracefully; see `Cluster.leave`."""
        return await self.cluster.leave(timeout)

    async def shutdown(self, *, leave: bool = True) -> None:
        """Leave the cluster (unless ``leave`` is false), then stop every actor and the transport.

        ``leave=False`` stops the node without telling the cluster, as a crash would (the
        others detect and down it); tests use it. Idempotent, like `ActorSystem.shutdown`.
        """
        if not leave:
            self._leave_on_shutdown = False
        await super().shutdown()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
            await self._wait_until_started()
        except BaseException:
            await self.shutdown()
            raise
        return self

    # -- hooks ---------------------------------------------------------------------------------

    async def _start_services(self) -> None:
        # Before the first log record; `start_node_services` corrects it once the port is bound.
        node_started(id(self), self._node_id or f"{self._host}:{self._port}", self._context)
        await super()._start_services()
        node = self.self_node
        from casty.config.services import start_node_services  # journal, logs, Prometheus

        await start_node_services(self)
        self._cluster = Cluster(node, self._config)
        settings = TopologySettings(
            self_node=node,
            node_id=self._node_id if self._node_id is not None else str(node.address),
            roles=self._roles,
            system_name=self.name,
            config=self._config,
            discovery=self._discovery,
            clock=self.clock,
            send=self._send_to_topology,
            quarantine=self._quarantine_member,
            probe=self._probe,
            cluster=self._cluster,
        )
        self.system_actor_of(topology_behavior(settings), TOPOLOGY_PATH.rsplit("/", 1)[1])

    async def _before_stop_actors(self) -> None:
        cluster = self._cluster
        if self._leave_on_shutdown and cluster is not None and not cluster.is_removed:
            await cluster.leave()
        await super()._before_stop_actors()

    async def _after_stop_actors(self) -> None:
        try:
            await super()._after_stop_actors()
        finally:
            if self._owns_discovery and self._discovery is not None:
                await self._discovery.aclose()
            from casty.config.services import stop_node_services

            await stop_node_services(self)

    # -- internals -----------------------------------------------------------------------------

    async def _wait_until_started(self) -> None:
        cluster = self.cluster
        config = self._config
        quorum = self._required_quorum
        loop = asyncio.get_running_loop()
        started = loop.time()
        limits = [t for t in (config.join_timeout, config.quorum_timeout if quorum else None) if t]
        join_limit = min(limits) if limits else None
        try:
            await cluster.wait_until(lambda c: c.is_up or c.is_removed, join_limit)
        except TimeoutError:
            raise QuorumNotReached(
                f"node {cluster.self_node} was not up within {join_limit} s "
                f"(status: {cluster.self_status.value if cluster.self_status else 'not admitted'})"
            ) from None
        cluster._raise_failure()
        if cluster.is_removed:
            raise NodeDowned(f"node {cluster.self_node} was downed or removed while starting")
        if quorum is None:
            return
        left = max(config.quorum_timeout - (loop.time() - started), 0.0)
        try:
            await cluster.wait_until(lambda c: len(c.up_members) >= quorum or c.is_removed, left)
        except TimeoutError:
            up = ", ".join(m.node_id for m in cluster.up_members)
            raise QuorumNotReached(
                f"{quorum} members were not up within {config.quorum_timeout} s "
                f"({len(cluster.up_members)} up: {up})"
            ) from None
        if cluster.is_removed:
            raise NodeDowned(f"node {cluster.self_node} was downed or removed while starting")

    def _send_to_topology(self, address: Address, message: object) -> None:
        ref = self._topology_refs.get(address)
        if ref is None:
            root = ActorAddress.of_node(self.name, address).root
            ref = self._topology_refs[address] = self.resolve(root + TOPOLOGY_PATH)
        ref.tell(message)

    def _quarantine_member(self, node: UniqueAddress, reason: str) -> None:
        self._topology_refs.pop(node.address, None)
        self.quarantine(node.address, incarnation=node.incarnation, reason=reason)

    async def _probe(self, seed: Address) -> None:
        await self.associate(seed, timeout=self._config.join.seed_node_timeout)


def _seed_source(
    seed_nodes: Iterable[SeedNode] | None, discovery: Discovery | str | Any
) -> tuple[Discovery | None, bool]:
    """The discovery to use, and whether the system built it (and so closes it)."""
    if discovery is not None:
        if seed_nodes is not None:
            raise ConfigurationError("give seed_nodes or discovery, not both")
        built = as_discovery(discovery)
        return built, built is not discovery
    if seed_nodes is None:
        return None, False
    if isinstance(seed_nodes, str):
        raise ConfigurationError(f"seed_nodes is a list of seeds, got the string {seed_nodes!r}")
    parts: list[str] = []
    for seed in seed_nodes:
        if isinstance(seed, Address):
            parts.append(str(seed))
        elif isinstance(seed, tuple) and len(seed) == 2:
            host, port = seed
            if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
                raise ConfigurationError(f"a seed is (host, port), got {seed!r}")
            parts.append(str(Address(host, port)))
        elif isinstance(seed, str):
            parts.append(seed.strip())
        else:
            raise ConfigurationError(
                f"a seed is an Address, a (host, port) pair or 'host:port', not {seed!r}"
            )
    # An explicitly empty list is a list that has no seed *yet*: keep asking, as with a
    # discovery that finds nobody (only omitted seeds found a one-node cluster at once).
    return as_discovery("static://" + ",".join(parts)), True
