"""Messages between a primary's `ReplicatedJournal` and the `replica_store` actors.

1. `Replicate`: the primary pushes the entries it has just stored (one atomic batch of one
   persistence id, consecutive sequence numbers, one epoch) to every replica store.
2. A replica answers `Replicated` once the entries are in its journal (or were already there),
   `ReplicaBehind` when it misses earlier entries (the primary then sends those from its
   journal, followed by the batch: catch-up from the replica's highest + 1), `ReplicaFenced`
   when it has stored a higher epoch for the id (the primary is stale and must stop writing),
   or `ReplicaDiverged` when it holds a different entry at a number it was sent.
3. `GetReplicaHighest` / `ReplicaHighest`: what a replica holds for an id; promotion picks the
   replica with the highest sequence number.

Every message is a frozen dataclass with a stable ``module:qualname``; fields added later must
have defaults, so an older node can still read a newer message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from casty.abc import JournalEntry

__all__ = [
    "GetReplicaHighest",
    "ReplicaBehind",
    "ReplicaDiverged",
    "ReplicaFenced",
    "ReplicaHighest",
    "Replicate",
    "Replicated",
]


@dataclass(frozen=True, slots=True)
class Replicate:
    """Primary to replica: store ``entries`` (one id, consecutive numbers, one epoch).

    The answer goes to ``reply_to``; ``batch`` is echoed so the primary matches it to its write.
    """

    entries: tuple[JournalEntry, ...]
    reply_to: Any
    batch: int = 0

    def with_reply_to(self, reply_to: Any) -> Replicate:
        """This message with ``reply_to`` set (an ask's request factory)."""
        return Replicate(self.entries, reply_to, self.batch)


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
    """Replica to primary: it holds another entry at ``sequence_nr`` (another epoch's history).

    Not an acknowledgement: the store keeps its entry (journals are append-only), so it cannot
    serve as a replica of this id until its log is cleared.
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
    """Answer to `GetReplicaHighest`; ``store`` is the replica store that answered."""

    persistence_id: str
    sequence_nr: int
    store: Any = None
