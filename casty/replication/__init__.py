"""Replication of event-sourced entities to other nodes' journals (see ``docs/replication.md``).

- `ReplicationConfig`: replicas, ``min_acks``, ``ack_timeout``.
- `ReplicatedJournal`: the primary's journal; a write counts once ``min_acks`` replicas hold it.
- `replica_store`: the actor on each node that stores pushed entries (fenced by epoch).
- `most_advanced_replica`: the replica to promote when a primary is lost.
- `casty.replication.protocol`: the messages between them.
- `casty.replication.sharded`: how ``Behaviors.sharded(..., replication=..., journal=...)``
  binds its entities' journals to their shard's replicas and epoch.
"""

from casty.replication.config import ReplicationConfig
from casty.replication.promotion import most_advanced_replica
from casty.replication.replica import replica_store
from casty.replication.replicator import ReplicatedJournal

__all__ = ["ReplicatedJournal", "ReplicationConfig", "most_advanced_replica", "replica_store"]
