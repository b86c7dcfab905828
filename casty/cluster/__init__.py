"""Cluster membership: members, gossip, failure detection, split brain resolution, events.

`ClusteredActorSystem` is the entry point: an actor system that joins a cluster when it starts
and leaves it when it stops; ``system.cluster`` (a `Cluster`) reads this node's view. The pure
algorithms live in the submodules (`casty.cluster.gossip`, `casty.cluster.downing`, ...) and
``docs/cluster.md`` describes them and their defaults.
"""

from __future__ import annotations

from casty.cluster.config import (
    ClusterConfig,
    DowningConfig,
    FailureDetectorConfig,
    GossipConfig,
    JoinConfig,
)
from casty.cluster.downing import DownAll, DowningStrategy, KeepMajority, KeepOldest, StaticQuorum
from casty.cluster.events import (
    ClusterDomainEvent,
    LeaderChanged,
    MemberDowned,
    MemberEvent,
    MemberExited,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberUp,
    MemberWeaklyUp,
    ReachabilityEvent,
    ReachableMember,
    TopologySnapshot,
    UnreachableMember,
)
from casty.cluster.facade import Cluster, ClusterStatistics, ExitHook
from casty.cluster.member import Member, MemberStatus, UniqueAddress
from casty.cluster.protocol import SubscribeTopology, UnsubscribeTopology
from casty.cluster.system import ClusteredActorSystem

__all__ = [
    "Cluster",
    "ClusterConfig",
    "ClusterDomainEvent",
    "ClusterStatistics",
    "ClusteredActorSystem",
    "DownAll",
    "DowningConfig",
    "DowningStrategy",
    "ExitHook",
    "FailureDetectorConfig",
    "GossipConfig",
    "JoinConfig",
    "KeepMajority",
    "KeepOldest",
    "LeaderChanged",
    "Member",
    "MemberDowned",
    "MemberEvent",
    "MemberExited",
    "MemberJoined",
    "MemberLeft",
    "MemberRemoved",
    "MemberStatus",
    "MemberUp",
    "MemberWeaklyUp",
    "ReachabilityEvent",
    "ReachableMember",
    "StaticQuorum",
    "SubscribeTopology",
    "TopologySnapshot",
    "UniqueAddress",
    "UnreachableMember",
    "UnsubscribeTopology",
]
