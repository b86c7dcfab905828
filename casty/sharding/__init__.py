"""Cluster sharding: entities keyed by id, spread over the cluster, moved when nodes come and go.

The pure parts live in `casty.sharding.hashing` (entity id to shard id), `.allocation` (where
shards go), `.table` (the coordinator's state) and `.messages` (`ShardEnvelope` and the
coordinator/region protocol). See ``docs/sharding.md``.
"""
