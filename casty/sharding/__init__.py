"""Cluster sharding: entities keyed by id, spread over the cluster, moved when nodes come and go.

`sharded` (also ``Behaviors.sharded``) builds the shard region a node spawns for a sharded
type; `ShardEnvelope` addresses an entity through it from any node; `passivate` lets an entity
ask to be stopped while idle; `wait_registered` surfaces a refused join. The pure parts live in
`casty.sharding.hashing` (entity id to shard id), `.allocation` (where shards go), `.table` (the
coordinator's state) and `.messages` (the coordinator/region protocol); the wiring in
`.region` and `.coordinator`. See ``docs/sharding.md``.
"""

from __future__ import annotations

from casty.sharding.allocation import (
    LeastShardAllocationStrategy,
    RoleFilter,
    ShardAllocationStrategy,
)
from casty.sharding.behavior import passivate, sharded, wait_registered
from casty.sharding.control import (
    CoordinatorState,
    GetCoordinatorState,
    ShardRegionRefused,
)
from casty.sharding.hashing import HASH_VERSION, shard_id_for
from casty.sharding.messages import (
    GetShardRegionState,
    Passivate,
    ShardEnvelope,
    ShardRegionState,
    ShardState,
    StartEntity,
)
from casty.sharding.settings import ShardingSettings
from casty.sharding.view import coordinator_name

__all__ = [
    "HASH_VERSION",
    "CoordinatorState",
    "GetCoordinatorState",
    "GetShardRegionState",
    "LeastShardAllocationStrategy",
    "Passivate",
    "RoleFilter",
    "ShardAllocationStrategy",
    "ShardEnvelope",
    "ShardRegionRefused",
    "ShardRegionState",
    "ShardState",
    "ShardingSettings",
    "StartEntity",
    "coordinator_name",
    "passivate",
    "shard_id_for",
    "sharded",
    "wait_registered",
]
