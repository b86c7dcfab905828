"""Replication of event-sourced entities to other nodes' journals (see ``docs/replication.md``).

- `ReplicationConfig`: replicas, ``min_acks``, ``ack_timeout``.
- `ReplicatedJournal`: the primary's journal; a write counts once ``min_acks`` replicas hold it.
- `replica_store`: the actor on each node that stores pushed entries (fenced by epoch).
- `pull_missing`: a promoted primary copies the entries of an id it lacks from its peers.
- `ShardLedger`: per node and sharded type, each shard's fence and the ids its journal holds
  (kept in that journal).
- `casty.replication.protocol`: the messages between them.
- `casty.replication.sharded`: how ``Behaviors.sharded(..., replication=..., journal=...)``
  binds its entities' journals to their shard's replicas and epoch.
"""

from casty.replication.config import ReplicationConfig
from casty.replication.ledger import ShardLedger
from casty.replication.promotion import pull_missing
from casty.replication.replica import replica_store
from casty.replication.replicator import ReplicatedJournal

__all__ = [
    "ReplicatedJournal",
    "ReplicationConfig",
    "ShardLedger",
    "pull_missing",
    "replica_store",
]
