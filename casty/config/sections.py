"""The sections of ``casty.toml`` that have no settings class of their own elsewhere.

Every other section maps onto the class its component already takes (`FailureDetectorConfig`,
`RemoteSettings`, `ShardingSettings`, `ReplicationConfig`, ...); see `casty.config.schema`.
Each class here checks its values on construction and raises `ConfigurationError` naming the
bad one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from casty.abc import Transport
from casty.actors.supervision import SupervisorStrategy
from casty.cluster.config import ClusterConfig, DowningConfig
from casty.cluster.downing import (
    DEFAULT_STABLE_AFTER,
    DownAll,
    DowningStrategy,
    KeepMajority,
    KeepOldest,
    StaticQuorum,
)
from casty.errors import ConfigurationError
from casty.sharding.settings import ShardingSettings

__all__ = [
    "ClusterSettings",
    "DowningSettings",
    "JournalSettings",
    "MailboxSettings",
    "MetricsSettings",
    "SerializerSettings",
    "ShardingDefaults",
    "SupervisionSettings",
    "TransportSettings",
]

#: Marks a field whose own fields appear directly in the field's table (no sub-table).
FLATTEN = {"flatten": True}

_STRATEGIES = ("keep-majority", "static-quorum", "keep-oldest", "down-all")
_DIRECTIVES = ("stop", "restart", "resume")


@dataclass(frozen=True, slots=True)
class DowningSettings:
    """The split brain resolver, as ``casty.toml`` spells it (see `DowningConfig`).

    Attributes:
        strategy: who survives a partition: ``"keep-majority"`` (default),
            ``"static-quorum"`` (needs ``quorum_size``), ``"keep-oldest"`` or ``"down-all"``.
        role: count only the members with this role (keep-majority, static-quorum,
            keep-oldest); unset: every member.
        quorum_size: static-quorum's minimum number of reachable members.
        down_if_alone: keep-oldest: the oldest member downs itself when it is alone on its
            side. Default true.
        stable_after: seconds the membership and reachability must stay unchanged before a
            decision. Default 1.0.
        down_all_when_unstable: ``true`` derives it (three quarters of ``stable_after``, at
            least 4 s); ``false`` disables it; a number of seconds sets it. Default true.
    """

    strategy: str = "keep-majority"
    role: str | None = None
    quorum_size: int | None = None
    down_if_alone: bool = True
    stable_after: float = DEFAULT_STABLE_AFTER
    down_all_when_unstable: float | bool = True

    def __post_init__(self) -> None:
        if self.strategy not in _STRATEGIES:
            raise ConfigurationError(
                f"strategy must be one of {', '.join(_STRATEGIES)}, got {self.strategy!r}"
            )
        # A key the strategy would ignore is refused: every key given takes effect.
        if (self.strategy == "static-quorum") != (self.quorum_size is not None):
            raise ConfigurationError("quorum_size is given with strategy 'static-quorum' only")
        if self.strategy != "keep-oldest" and self.down_if_alone is not True:
            raise ConfigurationError("down_if_alone applies to strategy 'keep-oldest' only")
        if self.strategy == "down-all" and self.role is not None:
            raise ConfigurationError("role does not apply to strategy 'down-all'")
        self.to_config()  # the resolver's own checks

    def to_config(self) -> DowningConfig:
        """The `DowningConfig` these settings describe."""
        strategy: DowningStrategy
        if self.strategy == "static-quorum":
            assert self.quorum_size is not None
            strategy = StaticQuorum(self.quorum_size, self.role)
        elif self.strategy == "keep-oldest":
            strategy = KeepOldest(self.down_if_alone, self.role)
        elif self.strategy == "down-all":
            strategy = DownAll()
        else:
            strategy = KeepMajority(self.role)
        return DowningConfig(strategy, self.stable_after, self.down_all_when_unstable)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """The node and its cluster (the arguments of `ClusteredActorSystem`).

    Attributes:
        name: the actor system's name; every node of a cluster uses the same one.
        host: the host to bind and advertise (an address the peers can reach).
        port: the port to bind; 0 picks a free one.
        node_id: the operator's name for this node (``member.node_id``); unset:
            ``"host:port"``.
        seeds: seed nodes as ``"host:port"``; give this or ``discovery``, not both. Unset (and
            no discovery): the node founds a one-node cluster at once.
        discovery: a discovery URL, e.g. ``"dns+srv://_casty._tcp.example.internal"`` or
            ``"static://10.0.0.1:25520,10.0.0.2:25520"``.
        roles: this node's roles (``member.roles``).
        required_quorum: starting waits until this many members are up; unset: only this node.
        config: the cluster's timings (flattened into this table, see `ClusterConfig`).
    """

    name: str = "casty"
    host: str = "127.0.0.1"
    port: int = 0
    node_id: str | None = None
    seeds: tuple[str, ...] | None = None
    discovery: str | None = None
    roles: tuple[str, ...] = ()
    required_quorum: int | None = None
    config: ClusterConfig = field(default_factory=ClusterConfig, metadata=FLATTEN)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"port must be in 0..65535, got {self.port}")
        if self.seeds is not None and self.discovery is not None:
            raise ConfigurationError("give seeds or discovery, not both")
        if self.required_quorum is not None and self.required_quorum < 1:
            raise ConfigurationError(f"required_quorum must be >= 1, got {self.required_quorum}")


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """How the node's connections are made.

    Attributes:
        url: the transport's URL: ``"tcp://"`` (default), ``"tls://"`` (give ``cert``,
            ``key`` and ``ca``), ``"memory://"``, or a plug-in's scheme.
        cert: TLS: PEM certificate (chain) of this node (``casty cert create-node``).
        key: TLS: PEM private key of ``cert``.
        ca: TLS: PEM certificate of the cluster's CA; peers must present a certificate it signed.
        require_client_cert: TLS: refuse clients without a certificate signed by ``ca``.
            Default true.
        check_hostname: TLS: check the peer's certificate names the host dialled. Default false.
        max_frame_size: the largest frame sent or accepted, in bytes. Default 8 MiB.
    """

    url: str = "tcp://"
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    require_client_cert: bool = True
    check_hostname: bool = False
    max_frame_size: int = Transport.DEFAULT_MAX_FRAME_SIZE

    def __post_init__(self) -> None:
        tls = self.url.startswith("tls:")
        given = [n for n in ("cert", "key", "ca") if getattr(self, n) is not None]
        if given and not tls:
            raise ConfigurationError(
                f"{', '.join(given)} apply to tls:// only, url is {self.url!r}"
            )
        if self.max_frame_size < 1:
            raise ConfigurationError(f"max_frame_size must be >= 1, got {self.max_frame_size}")

    def options(self) -> dict[str, object]:
        """The keyword arguments for `as_transport` beside the URL."""
        options: dict[str, object] = {"max_frame_size": self.max_frame_size}
        if self.url.startswith("tls:"):
            options.update(
                require_client_cert=self.require_client_cert, check_hostname=self.check_hostname
            )
            options.update({n: getattr(self, n) for n in ("cert", "key", "ca") if getattr(self, n)})
        return options


@dataclass(frozen=True, slots=True)
class SerializerSettings:
    """How messages and events are encoded; every node of a cluster uses the same.

    Attributes:
        name: the serializer's name or URL: ``"msgpack"`` (default) or ``"pickle"`` (trusted
            clusters only).
    """

    name: str = "msgpack"


@dataclass(frozen=True, slots=True)
class JournalSettings:
    """The node's journal (``system.journal``), opened when the node starts.

    Attributes:
        url: the journal's URL: ``"sqlite:///state.db"``, ``"postgresql://user@host/db"``,
            ``"memory://"``; unset: the node has no journal.
    """

    url: str | None = None


@dataclass(frozen=True, slots=True)
class ShardingDefaults:
    """What `Behaviors.sharded` uses for the arguments it is not given.

    Attributes:
        num_shards: shards per sharded type, identical on every node. Default 256.
        passivate_after: seconds of no message after which an entity is stopped; ``false``
            disables idle passivation. Default 120.0.
        buffer_size: messages a region holds at most while their shard has no reachable home.
            Default 100000.
        settings: the sharding timings (flattened into this table, see `ShardingSettings`).
    """

    num_shards: int = 256
    passivate_after: float | None = 120.0
    buffer_size: int = 100_000
    settings: ShardingSettings = field(default_factory=ShardingSettings, metadata=FLATTEN)

    def __post_init__(self) -> None:
        if not 0 < self.num_shards <= 1 << 32:
            raise ConfigurationError(f"num_shards must be in 1..2**32, got {self.num_shards}")
        if self.passivate_after is not None and not self.passivate_after > 0:
            raise ConfigurationError(f"passivate_after must be > 0, got {self.passivate_after}")
        if self.buffer_size < 1:
            raise ConfigurationError(f"buffer_size must be >= 1, got {self.buffer_size}")


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    """The mailboxes of user actors (those under ``/user``).

    Attributes:
        capacity: the most messages queued per actor when ``spawn`` is given no
            ``mailbox_capacity``; more become dead letters ("mailbox full"). Unset: unbounded.
        throughput: messages an actor handles per turn before yielding the event loop.
            Default 300.
    """

    capacity: int | None = None
    throughput: int = 300

    def __post_init__(self) -> None:
        if self.capacity is not None and self.capacity < 1:
            raise ConfigurationError(f"capacity must be >= 1, got {self.capacity}")
        if self.throughput < 1:
            raise ConfigurationError(f"throughput must be >= 1, got {self.throughput}")


@dataclass(frozen=True, slots=True)
class SupervisionSettings:
    """What happens to a failing user actor that no `Behaviors.supervise` covers.

    Attributes:
        strategy: ``"stop"`` (default), ``"restart"`` or ``"resume"``.
        max_restarts: restart: restarts allowed within ``within``; unset: no limit.
        within: restart: the window of ``max_restarts``, in seconds; unset: since spawn.
    """

    strategy: str = "stop"
    max_restarts: int | None = None
    within: float | None = None

    def __post_init__(self) -> None:
        if self.strategy not in _DIRECTIVES:
            raise ConfigurationError(
                f"strategy must be one of {', '.join(_DIRECTIVES)}, got {self.strategy!r}"
            )
        if self.strategy != "restart" and (
            self.max_restarts is not None or self.within is not None
        ):
            raise ConfigurationError("max_restarts and within apply to strategy 'restart' only")
        self.to_strategy()

    def to_strategy(self) -> SupervisorStrategy | None:
        """The default strategy of user actors; None for stop (an actor's own default)."""
        if self.strategy == "restart":
            return SupervisorStrategy.restart(max_restarts=self.max_restarts, within=self.within)
        if self.strategy == "resume":
            return SupervisorStrategy.resume()
        return None


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The Prometheus endpoint (needs ``pip install 'casty[metrics]'``).

    Attributes:
        prometheus_port: serve ``system.metrics()`` for Prometheus on this port (0: a free
            one); unset: no endpoint.
        prometheus_host: the address the endpoint binds. Default ``"127.0.0.1"``.
    """

    prometheus_port: int | None = None
    prometheus_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.prometheus_port is not None and not 0 <= self.prometheus_port <= 65535:
            raise ConfigurationError(
                f"prometheus_port must be in 0..65535, got {self.prometheus_port}"
            )
