"""Messages between a primary's `ReplicatedJournal` and the `replica_store` actors.

1. `Replicate`: the primary pushes the entries it has just stored (one atomic batch of one
   persistence id, consecutive sequence numbers, one epoch) to every replica store.
2. A replica answers `Replicated` once the entries are in its journal (or were already there),
   `ReplicaBehind` when it misses earlier entries (the primary then sends those from its
   journal, followed by the batch: catch-up from the replica's highest + 1), `ReplicaFenced`
   when it has stored a higher epoch for the id (the primary is stale and must stop writing),
   or `ReplicaDiverged` when it cannot replace its differing entries by the pushed ones. A node's
   pushes to one store travel in `ReplicateBatch` messages (the pushes of many entities at
   once), answered by one `ReplicatedBatch` carrying each push's answer.
3. `GetShardProgress` / `ShardProgress`: the coordinator, before promoting a replica of a lost
   primary's shard, asks each replica region's store how advanced its copy of the shard is and
   promotes the most advanced; the question also fences the store at the coming epoch.
4. `GetReplicaHighest` / `ReplicaHighest` and `ReadReplica` / `ReplicaEntries`: a promoted
   primary, recovering an entity, asks the shard's other stores what they hold of its id and
   reads the entries it lacks from the most advanced one (`casty.replication.promotion`).

Every message is a frozen dataclass with a stable ``module:qualname``; fields added later must
have defaults, so an older node can still read a newer message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from casty.abc import JournalEntry

__all__ = [
    "CATCH_UP_LIMIT",
    "READ_LIMIT",
    "GetReplicaHighest",
    "GetShardProgress",
    "ReadReplica",
    "ReplicaBehind",
    "ReplicaDiverged",
    "ReplicaEntries",
    "ReplicaFenced",
    "ReplicaHighest",
    "Replicate",
    "ReplicateBatch",
    "Replicated",
    "ReplicatedBatch",
    "ShardProgress",
]


READ_LIMIT = 1000
"""Most entries one `ReplicaEntries` carries (a replica store's answer to `ReadReplica`)."""

CATCH_UP_LIMIT = 1000
"""Most entries one catch-up `Replicate` of a primary carries; a store asks for at most half
as many before a push (`ReplicaBehind`), so the resent chunk still holds the entry that
differed."""


@dataclass(frozen=True, slots=True)
class Replicate:
    """Primary to replica: store ``entries`` (one id, consecutive numbers, one epoch).

    The answer goes to ``reply_to``; ``batch`` is echoed so the primary matches it to its write.
    Inside cluster sharding ``shard`` is the entities' shard (-1 outside) and ``epoch`` the
    primary's epoch (catch-up entries may carry older ones): the store refuses a push whose
    ``epoch`` is older than the shard's fence, whatever the id.
    """

    entries: tuple[JournalEntry, ...]
    reply_to: Any
    batch: int = 0
    shard: int = -1
    epoch: int = 0

    def with_reply_to(self, reply_to: Any) -> Replicate:
        """This message with ``reply_to`` set (an ask's request factory)."""
        return Replicate(self.entries, reply_to, self.batch, self.shard, self.epoch)


@dataclass(frozen=True, slots=True)
class ReplicateBatch:
    """A node's primaries to one replica store: several `Replicate` pushes in one message; the
    store handles them as if they came one by one, in order, and answers one `ReplicatedBatch`
    to ``reply_to`` once all are handled.

    ``rows`` holds the pushes flat, one list of plain values per push (`batch_of` builds it,
    `pushes` reads it back): a serializer then writes the whole batch as one object, instead
    of three nested ones (push, tuple, entry) per push.
    """

    rows: list[list[Any]]
    reply_to: Any

    @staticmethod
    def batch_of(pushes: Sequence[Replicate], reply_to: Any) -> ReplicateBatch:
        """The batch of ``pushes`` (their ``reply_to`` is dropped), answered to ``reply_to``."""
        rows = []
        for push in pushes:
            row: list[Any] = [push.shard, push.epoch, push.batch]
            for e in push.entries:
                row += (e.persistence_id, e.sequence_nr, e.payload, e.serializer, e.manifest,
                        e.epoch, e.timestamp_ms)  # fmt: skip
            rows.append(row)
        return ReplicateBatch(rows, reply_to)

    def pushes(self) -> list[Replicate]:
        """The pushes ``rows`` holds, in order (``reply_to`` None in each).

        Raises:
            ValueError, TypeError: a malformed row.
        """
        pushes = []
        for row in self.rows:
            shard, epoch, batch = row[0], row[1], row[2]
            if (len(row) - 3) % 7:
                raise ValueError(f"a push row of {len(row)} values")
            entries = tuple([JournalEntry(*row[i : i + 7]) for i in range(3, len(row), 7)])
            pushes.append(Replicate(entries, None, batch, shard, epoch))
        return pushes


@dataclass(frozen=True, slots=True)
class ReplicatedBatch:
    """Answer to `ReplicateBatch`: ``answers[i]`` answers ``pushes[i]``: an int ``n`` stands
    for ``Replicated(<its id>, n)`` (the usual answer, kept small on the wire), otherwise a
    `ReplicaBehind`, `ReplicaFenced` or `ReplicaDiverged`, or None when the store could not
    handle it (its journal failed: nothing is confirmed)."""

    answers: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Replicated:
    """Replica to primary: the entries of ``batch`` are stored; ``highest`` is its last number."""

    persistence_id: str
    highest: int
    batch: int = 0


@dataclass(frozen=True, slots=True)
class ReplicaBehind:
    """Replica to primary: it holds entries only up to ``highest``; send from ``highest + 1``."""

    persistence_id: str
    highest: int
    batch: int = 0


@dataclass(frozen=True, slots=True)
class ReplicaFenced:
    """Replica to primary: it refused ``batch`` since it stored the newer ``epoch`` for the id."""

    persistence_id: str
    epoch: int
    batch: int = 0


@dataclass(frozen=True, slots=True)
class ReplicaDiverged:
    """Replica to primary: it cannot take the push now: where the logs differ, at
    ``sequence_nr``, its entries are newer than the pushed ones (a catch-up of old entries;
    the primary's own next write replaces them), or its journal cannot replace entries.

    Not an acknowledgement: the store keeps its entries.
    """

    persistence_id: str
    sequence_nr: int
    batch: int = 0


@dataclass(frozen=True, slots=True)
class GetReplicaHighest:
    """Ask a replica store for its highest sequence number of ``persistence_id``."""

    persistence_id: str
    reply_to: Any


@dataclass(frozen=True, slots=True)
class ReplicaHighest:
    """Answer to `GetReplicaHighest`: ``sequence_nr`` is the store's highest number of the id
    and ``epoch`` its entry's epoch (0 when it holds none); ``store`` is the store."""

    persistence_id: str
    sequence_nr: int
    store: Any = None
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class ReadReplica:
    """Ask a replica store for its entries of ``persistence_id`` in ``from_nr..to_nr``
    (inclusive, at most 1000 of them); it answers `ReplicaEntries`."""

    persistence_id: str
    from_nr: int
    to_nr: int
    reply_to: Any


@dataclass(frozen=True, slots=True)
class ReplicaEntries:
    """Answer to `ReadReplica`: the entries, in order (empty when it holds none of them)."""

    persistence_id: str
    entries: tuple[JournalEntry, ...]


@dataclass(frozen=True, slots=True)
class GetShardProgress:
    """Coordinator to a replica store: how advanced is your copy of ``shard``?

    The store first raises the shard's fence to ``epoch`` (the epoch the shard is about to be
    allocated at), so pushes of the lost primary that arrive later are refused. ``tag`` is
    echoed in the answer (the coordinator's key of the store's region).
    """

    shard: int
    epoch: int
    reply_to: Any
    tag: str = ""


@dataclass(frozen=True, slots=True)
class ShardProgress:
    """Answer to `GetShardProgress`: the newest primary ``epoch`` whose entries the store
    holds for the shard, and ``total``, the sum of its highest sequence numbers over the
    shard's ids; the copy with the higher ``(epoch, total)`` is the more advanced. ``fence``
    is the store's fence for the shard before the question raised it: a coordinator whose
    table lost the shard's history (rebuilt after its predecessor's node was lost) allocates
    above it."""

    shard: int
    epoch: int
    total: int
    tag: str = ""
    fence: int = 0
