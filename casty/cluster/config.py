"""Cluster settings: frozen dataclasses with documented defaults (seconds as ``float``).

Every value has a default chosen for the issue's targets on a LAN or loopback: a crashed node
of a 3-node cluster is downed and removed on every survivor within 5 s, and a node that pauses
for 1 s (SIGSTOP, a long garbage collection) is never suspected. Akka's documented defaults
(heartbeat 1 s, acceptable pause 3 s, gossip 1 s, split brain resolver ``stable-after`` 20 s)
are slower by design, for cloud networks; the Akka equivalents are named below so settings can
be carried over. Build a variant with `dataclasses.replace`::

    config = ClusterConfig(
        failure_detector=FailureDetectorConfig(acceptable_heartbeat_pause=3.0),
        downing=DowningConfig(strategy=KeepOldest(), stable_after=5.0),
    )

Every constructor checks its values and raises `ConfigurationError` naming the bad one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from casty.cluster.downing import DEFAULT_STABLE_AFTER, DowningStrategy, KeepMajority
from casty.cluster.failure_detector import (
    DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_SAMPLE_SIZE,
    DEFAULT_MIN_STD_DEVIATION,
    DEFAULT_THRESHOLD,
)
from casty.cluster.heartbeat import DEFAULT_MONITORED_BY_NR_OF_MEMBERS
from casty.errors import ConfigurationError

__all__ = [
    "ClusterConfig",
    "DowningConfig",
    "FailureDetectorConfig",
    "GossipConfig",
    "JoinConfig",
]


def _positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
        if not 0 < value < math.inf:
            raise ConfigurationError(f"{name} must be > 0 and finite, got {value!r}")


def _non_negative(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
        if not 0 <= value < math.inf:
            raise ConfigurationError(f"{name} must be >= 0 and finite, got {value!r}")


def _count(owner: object, name: str, low: int = 1) -> None:
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{name} must be an int >= {low}, got {value!r}")


@dataclass(frozen=True, slots=True)
class FailureDetectorConfig:
    """Heartbeats and the phi accrual failure detector (Hayashibara et al. 2004).

    With the defaults a silent node is suspected after about
    ``heartbeat_interval + acceptable_heartbeat_pause + 5.23 * min_std_deviation`` = 2.2 s
    of silence (see `casty.cluster.failure_detector`).

    Attributes:
        heartbeat_interval: seconds between heartbeat requests to each monitored node
            (Akka: ``heartbeat-interval`` = 1 s). Default 0.5.
        threshold: phi at which a node counts as unreachable (Akka: 8.0). Default 8.0.
        acceptable_heartbeat_pause: seconds of silence tolerated on top of the usual interval
            (Akka: 3 s). Default 1.2.
        min_std_deviation: floor of the inter-arrival standard deviation, seconds (Akka:
            100 ms). Default 0.1.
        max_sample_size: inter-arrival samples kept per monitored node (Akka: 1000). Default 200.
        expected_response_after: seconds after which a newly monitored node that never answered
            gets its detector started anyway, so a node that dies before its first answer is
            still detected (Akka: 1 s). Default 0.5.
        monitored_by_nr_of_members: how many nodes heartbeat each node (the bounded monitoring
            ring, not all pairs; Akka: 9). Default 5.
    """

    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    threshold: float = DEFAULT_THRESHOLD
    acceptable_heartbeat_pause: float = DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE
    min_std_deviation: float = DEFAULT_MIN_STD_DEVIATION
    max_sample_size: int = DEFAULT_MAX_SAMPLE_SIZE
    expected_response_after: float = DEFAULT_HEARTBEAT_INTERVAL
    monitored_by_nr_of_members: int = DEFAULT_MONITORED_BY_NR_OF_MEMBERS

    def __post_init__(self) -> None:
        _positive(self, "heartbeat_interval", "threshold", "min_std_deviation")
        _non_negative(self, "acceptable_heartbeat_pause", "expected_response_after")
        _count(self, "max_sample_size")
        _count(self, "monitored_by_nr_of_members")


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Gossip rounds.

    Each round a node sends its state to up to ``fanout`` peers that have not seen its version
    (preferred with ``different_view_probability``) and otherwise, at rest, one `GossipStatus`
    digest to one peer; a peer whose state differs answers with the full state. At rest a node
    therefore sends ``1 / interval`` digests per second, each linear in the number of members.

    Attributes:
        interval: seconds between rounds (Akka: ``gossip-interval`` = 1 s). Default 0.25.
        fanout: peers per round while some member has not seen this node's version; >= 1.
            Default 3.
        different_view_probability: chance of preferring peers that have not seen our version
            (Akka: 0.8). Default 0.8.
        tombstone_ttl: seconds a removed member's tombstone is kept, after which an old gossip
            naming it could no longer be told apart (Akka: ``prune-gossip-tombstones-after`` =
            24 h). Default 86400.
    """

    interval: float = 0.25
    fanout: int = 3
    different_view_probability: float = 0.8
    tombstone_ttl: float = 86400.0

    def __post_init__(self) -> None:
        _positive(self, "interval", "tombstone_ttl")
        _count(self, "fanout")
        p = self.different_view_probability
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise ConfigurationError(f"different_view_probability must be in [0, 1], got {p!r}")


@dataclass(frozen=True, slots=True)
class DowningConfig:
    """The split brain resolver (see `casty.cluster.downing`).

    Attributes:
        strategy: who survives a partition: `KeepMajority` (default), `StaticQuorum`,
            `KeepOldest` or `DownAll`.
        stable_after: seconds the membership and reachability must stay unchanged before a
            decision (Akka: 20 s, tuned for cloud networks). Default 1.0.
        down_all_when_unstable: ``True`` derives it as Akka does (three quarters of
            ``stable_after``, at least 4 s); ``False`` disables it; a number of seconds sets it.
    """

    strategy: DowningStrategy = field(default_factory=KeepMajority)
    stable_after: float = DEFAULT_STABLE_AFTER
    down_all_when_unstable: float | bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, DowningStrategy):
            raise ConfigurationError(f"strategy must be a DowningStrategy, got {self.strategy!r}")
        _positive(self, "stable_after")
        unstable = self.down_all_when_unstable
        if not isinstance(unstable, bool):
            _positive(self, "down_all_when_unstable")


@dataclass(frozen=True, slots=True)
class JoinConfig:
    """How a starting node finds and joins the cluster (Akka's seed node process).

    A node asks every seed whether it belongs to a cluster (``InitJoin``). A seed that is a
    member answers yes and the node joins through it; a live seed that is not a member yet
    answers no. The *first seed* (the lowest address among the seeds every node agrees on)
    founds a new cluster when every other seed answered no, or after ``seed_node_timeout`` when
    some did not answer at all; every other node keeps asking.

    Attributes:
        retry_interval: seconds between rounds of asking while some seed answers. Default 0.25.
        max_retry_interval: the cap of the backoff (x1.5 per round) while no seed answers at
            all (an empty or unreachable seed list). Default 2.0.
        seed_node_timeout: seconds the first seed waits for silent seeds before founding the
            cluster alone (Akka: 5 s); also how long a seed's "not a member" answer counts,
            and how long a search lasts before it logs "still joining". Default 5.0.
        retry_unsuccessful_join_after: seconds to wait for the welcome after a join request
            before starting over (Akka: 10 s). Default 3.0.
        log_interval: the most frequent a "still joining" (or "no seed nodes known")
            warning is repeated, in seconds. Default 10.0.
    """

    retry_interval: float = 0.25
    max_retry_interval: float = 2.0
    seed_node_timeout: float = 5.0
    retry_unsuccessful_join_after: float = 3.0
    log_interval: float = 10.0

    def __post_init__(self) -> None:
        _positive(
            self,
            "retry_interval",
            "max_retry_interval",
            "seed_node_timeout",
            "retry_unsuccessful_join_after",
            "log_interval",
        )
        if self.max_retry_interval < self.retry_interval:
            raise ConfigurationError(
                f"max_retry_interval ({self.max_retry_interval}) must be >= retry_interval "
                f"({self.retry_interval})"
            )


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Everything a `ClusteredActorSystem` can be tuned with.

    Attributes:
        failure_detector: heartbeats and phi accrual detection.
        gossip: gossip rounds.
        downing: the split brain resolver.
        join: finding and joining the cluster.
        join_timeout: seconds ``__aenter__`` waits for this node to be up before raising
            `QuorumNotReached`; ``None`` (default) keeps trying for ever, logging calmly.
        quorum_timeout: seconds ``__aenter__`` waits for ``required_quorum`` members to be up
            (counted from the start) before raising `QuorumNotReached`. Default 60.0.
        leave_timeout: seconds a graceful leave (``await system.leave()`` or leaving the
            ``async with`` block) waits for this node's removal, exit hooks included, before
            the node stops anyway (Akka: coordinated shutdown's ``cluster-exiting`` = 10 s).
            Default 10.0.
    """

    failure_detector: FailureDetectorConfig = field(default_factory=FailureDetectorConfig)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    downing: DowningConfig = field(default_factory=DowningConfig)
    join: JoinConfig = field(default_factory=JoinConfig)
    join_timeout: float | None = None
    quorum_timeout: float = 60.0
    leave_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name, kind in (
            ("failure_detector", FailureDetectorConfig),
            ("gossip", GossipConfig),
            ("downing", DowningConfig),
            ("join", JoinConfig),
        ):
            if not isinstance(getattr(self, name), kind):
                raise ConfigurationError(
                    f"{name} must be a {kind.__name__}, got {getattr(self, name)!r}"
                )
        if self.join_timeout is not None:
            _positive(self, "join_timeout")
        _positive(self, "quorum_timeout", "leave_timeout")
