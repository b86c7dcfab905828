"""`Metrics`: a snapshot of a node's counters, as ``system.metrics()`` returns it.

The counters are plain integers the hot paths bump (a message handled, a dead letter, a frame
sent); the snapshot reads them, the membership and the shard regions when it is taken. The
optional Prometheus endpoint (``[metrics] prometheus_port`` in ``casty.toml``, extra
``casty[metrics]``) serves the same snapshot; see `casty.prometheus`.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from casty.actors.system import ActorSystem
    from casty.remote.events import PeerStatistics

__all__ = [
    "LATENCY_BUCKETS",
    "HistogramSnapshot",
    "LatencyHistogram",
    "Metrics",
    "RegionMetrics",
    "snapshot",
]

#: Upper bounds (seconds) of the latency histogram's buckets; a last one is unbounded.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip


class LatencyHistogram:
    """Counts of durations per bucket of `LATENCY_BUCKETS` (plus one unbounded bucket)."""

    __slots__ = ("_counts", "_sum")

    def __init__(self) -> None:
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0

    def record(self, seconds: float) -> None:
        """Count one duration."""
        self._counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sum += seconds

    def snapshot(self) -> HistogramSnapshot:
        """The counts so far."""
        return HistogramSnapshot(LATENCY_BUCKETS, tuple(self._counts), self._sum)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Durations counted per bucket.

    Attributes:
        bounds: the buckets' upper bounds in seconds, ascending; ``counts`` has one more entry,
            for durations above the last bound.
        counts: durations per bucket (not cumulative): ``counts[i]`` counts durations in
            ``(bounds[i-1], bounds[i]]``.
        sum: the sum of every duration counted, in seconds.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        """Durations counted."""
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding quantile ``q`` (0..1); ``inf`` above the last
        bound, 0.0 when nothing was counted."""
        total = self.count
        if total == 0:
            return 0.0
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= q * total:
                return self.bounds[index] if index < len(self.bounds) else float("inf")
        return float("inf")


@dataclass(frozen=True, slots=True)
class RegionMetrics:
    """One shard region of this node.

    Attributes:
        shards: shards the region hosts here.
        entities: live entities of the region here.
    """

    shards: int
    entities: int


@dataclass(frozen=True, slots=True)
class Metrics:
    """A snapshot of one node (``system.metrics()``); counters count since the system started.

    Attributes:
        node: this node's address (``casty://system@host:port``), or the system's root for a
            local system.
        messages_processed: messages handed to actors' handlers.
        dead_letters: dropped messages by `DeadLetter` reason.
        mailbox_high_water: the deepest mailbox seen (measured when an actor starts a run).
        members: cluster members by status (``"up"``, ``"leaving"``, ...), in this node's view.
        regions: shards and entities per sharded type hosted here, by type name.
        journal_write_latency: seconds per write of the event-sourced entities on this node,
            replication acknowledgements included.
        peers: traffic per peer node (`PeerStatistics`: frames are transport frames, bytes
            exclude framing), by address (``host:port``).
    """

    node: str
    messages_processed: int
    dead_letters: dict[str, int]
    mailbox_high_water: int
    members: dict[str, int] = field(default_factory=dict)
    regions: dict[str, RegionMetrics] = field(default_factory=dict)
    journal_write_latency: HistogramSnapshot = field(
        default_factory=lambda: LatencyHistogram().snapshot()
    )
    peers: dict[str, PeerStatistics] = field(default_factory=dict)


def snapshot(system: ActorSystem) -> Metrics:
    """Take ``system``'s metrics (what ``system.metrics()`` returns)."""
    # Duck-typed: a local system has none of these, and need not import remoting to say so.
    peers: dict[str, PeerStatistics] = {}
    remote_statistics = getattr(system, "remote_statistics", None)
    if remote_statistics is not None:
        peers = {str(peer.address): peer for peer in remote_statistics().peers}
    members: dict[str, int] = {}
    cluster = getattr(system, "_cluster", None)
    if cluster is not None:
        for member in cluster.members:
            members[member.status.value] = members.get(member.status.value, 0) + 1
    return Metrics(
        node=system._address_prefix,
        messages_processed=system._processed,
        dead_letters=dict(system._dead_letter_reasons),
        mailbox_high_water=system._mailbox_high_water,
        members=members,
        regions=_regions(system),
        journal_write_latency=system._journal_writes.snapshot(),
        peers=peers,
    )


def _regions(system: ActorSystem) -> dict[str, RegionMetrics]:
    region_module = sys.modules.get("casty.sharding.region")
    if region_module is None:
        return {}  # sharding was never imported: there is no region
    region_state = region_module.region_state
    regions: dict[str, RegionMetrics] = {}
    stack: list[Any] = [system._user, system._system_guardian]
    while stack:
        cell = stack.pop()
        state = region_state(cell)
        if state is not None:  # a region's children are its entities: no need to look
            regions[cell._name] = RegionMetrics(*state)
        elif cell._children:
            stack.extend(cell._children.values())
    return regions
