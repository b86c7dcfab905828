"""`LocalReads`: what replicated journals share: all but ``write`` goes to the local journal."""

from __future__ import annotations

from collections.abc import AsyncIterator

from casty.abc import MAX_SEQUENCE_NR, Journal, JournalEntry, SnapshotEntry

__all__ = ["LocalReads"]


class LocalReads(Journal):
    """A journal whose ``open``, reads, deletions and snapshots go to ``_local`` unchanged.

    Subclasses set ``_local`` and implement ``write`` and ``aclose``; only writes are
    replicated, so both primaries (`ReplicatedJournal`, `ShardJournal`) read their own log.
    """

    _local: Journal

    async def open(self) -> None:
        await self._local.open()

    def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        limit: int | None = None,
    ) -> AsyncIterator[JournalEntry]:
        return self._local.replay(persistence_id, from_sequence_nr, to_sequence_nr, limit)

    async def highest_sequence_nr(self, persistence_id: str) -> int:
        return await self._local.highest_sequence_nr(persistence_id)

    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        await self._local.delete_to(persistence_id, to_sequence_nr)

    async def save_snapshot(self, snapshot: SnapshotEntry) -> None:
        await self._local.save_snapshot(snapshot)

    async def load_snapshot(
        self,
        persistence_id: str,
        max_sequence_nr: int = MAX_SEQUENCE_NR,
        min_sequence_nr: int = 0,
        max_timestamp_ms: int | None = None,
    ) -> SnapshotEntry | None:
        return await self._local.load_snapshot(
            persistence_id, max_sequence_nr, min_sequence_nr, max_timestamp_ms
        )

    async def delete_snapshots(
        self, persistence_id: str, max_sequence_nr: int, min_sequence_nr: int = 0
    ) -> None:
        await self._local.delete_snapshots(persistence_id, max_sequence_nr, min_sequence_nr)
