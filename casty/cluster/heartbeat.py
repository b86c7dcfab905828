"""Who heartbeats whom: a bounded monitoring ring, the sender's state, and the reaper.

Heartbeating every pair costs N² messages. As in Akka Cluster (its documentation describes the
scheme), the members are placed on a ring ordered by a hash of their unique address, and each
node monitors only the next ``monitored_by_nr_of_members`` reachable nodes clockwise, so every
node is watched by that many others whatever the cluster size. Unreachable nodes met on the way
are monitored as well (without counting toward the bound), and a node that was monitored and
became unreachable stays monitored after the ring changes, so that it can be seen to come back.

The pieces are pure and clock-driven; the heartbeat actor wires them to the network:

* `MonitoringRing`: the ring and its ``receivers`` (the nodes a given node monitors).
* `HeartbeatSender`: one node's monitoring state: which nodes to send heartbeat requests to
  each interval, feeding responses to a `FailureDetectorRegistry`, and starting the detector of
  a node that never answers.
* `reap_unreachable`: turns the detectors' verdicts into reachability changes of the gossip.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from typing import final

from casty.cluster.failure_detector import DEFAULT_HEARTBEAT_INTERVAL, FailureDetectorRegistry
from casty.cluster.gossip import Gossip
from casty.cluster.member import UniqueAddress
from casty.errors import ConfigurationError

__all__ = [
    "DEFAULT_EXPECTED_RESPONSE_AFTER",
    "DEFAULT_MONITORED_BY_NR_OF_MEMBERS",
    "HeartbeatSender",
    "MonitoringRing",
    "reap_unreachable",
]

#: How many nodes monitor each node (Akka's default).
DEFAULT_MONITORED_BY_NR_OF_MEMBERS = 5
#: Seconds after which a monitored node that never answered gets its detector started anyway.
DEFAULT_EXPECTED_RESPONSE_AFTER = DEFAULT_HEARTBEAT_INTERVAL


def _ring_key(node: UniqueAddress) -> tuple[bytes, UniqueAddress]:
    # A stable hash (the same in every process, unlike hash()) spreads neighbours in address
    # order around the ring; the address breaks the (astronomically unlikely) ties.
    return hashlib.blake2b(node.key.encode(), digest_size=8).digest(), node


@final
class MonitoringRing:
    """The members on a hashed ring; each monitors the next few reachable ones clockwise.

    Every node computes the same ring from the same members, so the bound holds cluster-wide:
    with all nodes reachable, each node monitors and is monitored by exactly
    ``min(monitored_by_nr_of_members, N - 1)`` others; in general each node is monitored by at
    most ``monitored_by_nr_of_members`` reachable nodes, and every unreachable node is
    monitored at least by its reachable-or-not predecessor on the ring.

    Args:
        nodes: the members to monitor (every status; removed ones excluded).
        unreachable: members recorded as unreachable (skipped when counting).
        monitored_by_nr_of_members: the bound; >= 1.

    Raises:
        ConfigurationError: the bound is below 1.
    """

    __slots__ = ("_index", "_k", "_ring", "_unreachable")

    def __init__(
        self,
        nodes: Iterable[UniqueAddress],
        unreachable: Iterable[UniqueAddress] = (),
        monitored_by_nr_of_members: int = DEFAULT_MONITORED_BY_NR_OF_MEMBERS,
    ) -> None:
        if isinstance(monitored_by_nr_of_members, bool) or monitored_by_nr_of_members < 1:
            raise ConfigurationError(
                f"monitored_by_nr_of_members must be >= 1, got {monitored_by_nr_of_members!r}"
            )
        self._k = monitored_by_nr_of_members
        self._ring = tuple(sorted(set(nodes), key=_ring_key))
        self._index = {node: i for i, node in enumerate(self._ring)}
        self._unreachable = frozenset(unreachable)

    @property
    def nodes(self) -> tuple[UniqueAddress, ...]:
        """The nodes in ring order."""
        return self._ring

    def receivers(self, sender: UniqueAddress) -> frozenset[UniqueAddress]:
        """The nodes ``sender`` monitors (``sender`` need not be on the ring).

        Walking clockwise from ``sender``: take reachable nodes until ``k`` are taken, and the
        unreachable nodes met while fewer than ``k`` nodes are taken.
        """
        ring = self._ring
        if sender in self._index:
            start = self._index[sender] + 1
            others = ring[start:] + ring[: start - 1]
        else:
            key = _ring_key(sender)
            start = sum(1 for node in ring if _ring_key(node) < key)
            others = ring[start:] + ring[:start]
        taken: list[UniqueAddress] = []
        remaining = self._k
        for node in others:
            if remaining == 0:
                break
            if node in self._unreachable:
                if len(taken) < self._k:
                    taken.append(node)
            else:
                taken.append(node)
                remaining -= 1
        return frozenset(taken)

    def monitors_of(self, subject: UniqueAddress) -> frozenset[UniqueAddress]:
        """The ring nodes whose `receivers` include ``subject`` (for diagnostics and tests)."""
        return frozenset(n for n in self._ring if n != subject and subject in self.receivers(n))


@final
class HeartbeatSender:
    """One node's monitoring state: whom to heartbeat and what the answers mean.

    Drive it from the heartbeat actor: call `update` on every membership or reachability
    change, `tick` every heartbeat interval (send a heartbeat request to each node it returns),
    and `heartbeat_response` when a node answers. The failure detectors live in ``registry``;
    `reap_unreachable` reads them.

    Args:
        self_node: this node.
        registry: the failure detectors, keyed by unique address.
        monitored_by_nr_of_members: the ring bound; >= 1.
        expected_response_after: seconds after which a newly monitored node that has not
            answered yet gets its detector started anyway (so a node that dies before its first
            answer is still detected); >= 0.
        clock: monotonic seconds.

    Raises:
        ConfigurationError: a parameter is out of its range.
    """

    __slots__ = (
        "_clock",
        "_expected_after",
        "_k",
        "_pending_first",
        "_registry",
        "_ring",
        "_self",
        "_sticky",
    )

    def __init__(
        self,
        self_node: UniqueAddress,
        registry: FailureDetectorRegistry[UniqueAddress],
        *,
        monitored_by_nr_of_members: int = DEFAULT_MONITORED_BY_NR_OF_MEMBERS,
        expected_response_after: float = DEFAULT_EXPECTED_RESPONSE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not expected_response_after >= 0:
            raise ConfigurationError(
                f"expected_response_after must be >= 0 s, got {expected_response_after!r}"
            )
        self._self = self_node
        self._registry = registry
        self._k = monitored_by_nr_of_members
        self._expected_after = float(expected_response_after)
        self._clock = clock
        self._ring = MonitoringRing([self_node], (), monitored_by_nr_of_members)
        # Former receivers that became unreachable: kept until they answer again.
        self._sticky: set[UniqueAddress] = set()
        # Newly monitored nodes and when their detector starts if they stay silent.
        self._pending_first: dict[UniqueAddress, float] = {}

    @property
    def active_receivers(self) -> frozenset[UniqueAddress]:
        """The nodes heartbeated now: the ring's receivers plus former ones now unreachable."""
        return self._ring.receivers(self._self) | self._sticky

    def update(self, nodes: Iterable[UniqueAddress], unreachable: Iterable[UniqueAddress]) -> None:
        """Adopt a new membership (every non-removed member) and unreachable set.

        Nodes that stop being receivers stop being monitored, unless their detector deems them
        unavailable: those stay monitored. Nodes no longer in ``nodes`` are forgotten.
        """
        members = frozenset(nodes) | {self._self}
        before = self.active_receivers
        self._ring = MonitoringRing(members, unreachable, self._k)
        receivers = self._ring.receivers(self._self)
        for node in before - receivers:
            if node in members and not self._registry.is_available(node):
                self._sticky.add(node)
            else:
                self._sticky.discard(node)
                self._pending_first.pop(node, None)
                self._registry.remove(node)
        now = self._clock()
        for node in receivers - before:
            if not self._registry.is_monitoring(node):
                self._pending_first.setdefault(node, now + self._expected_after)

    def tick(self) -> frozenset[UniqueAddress]:
        """Start the detectors of silent newcomers whose grace period ended; return the nodes
        to send a heartbeat request to now."""
        now = self._clock()
        for node, deadline in list(self._pending_first.items()):
            if now >= deadline:
                del self._pending_first[node]
                if not self._registry.is_monitoring(node):
                    self._registry.heartbeat(node)
        return self.active_receivers

    def heartbeat_response(self, node: UniqueAddress) -> None:
        """``node`` answered a heartbeat request; answers from nodes not monitored are ignored.

        A former receiver that was kept because it was unreachable stops being monitored once
        it answers, which `reap_unreachable` then records as reachable.
        """
        if node not in self.active_receivers:
            return
        self._pending_first.pop(node, None)
        self._registry.heartbeat(node)
        if node in self._sticky and node not in self._ring.receivers(self._self):
            # Back from unreachable and no longer ours to watch: forgetting its detector makes
            # it count as available, so the reaper marks it reachable again.
            self._sticky.discard(node)
            self._registry.remove(node)


def reap_unreachable(
    gossip: Gossip, self_node: UniqueAddress, is_available: Callable[[UniqueAddress], bool]
) -> Gossip:
    """Record ``self_node``'s current verdicts in the gossip's reachability table.

    Every other member that ``is_available`` rejects is marked unreachable by ``self_node``,
    and every member ``self_node`` had marked unreachable that is available again is marked
    reachable. Terminated records stay. Returns the same state when nothing changed.

    Args:
        gossip: the current state.
        self_node: the observer.
        is_available: the verdict per node, normally `FailureDetectorRegistry.is_available`
            (unmonitored nodes count as available).
    """
    result = gossip
    for member in gossip.members:
        node = member.unique_address
        if node == self_node:
            continue
        if not is_available(node):
            result = result.mark_unreachable(node, self_node)
        else:
            result = result.mark_reachable(node, self_node)
    return result
