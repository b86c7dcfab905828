"""`ShardLedger`: what one node's journal holds of each shard of a replicated sharded type.

Durable in the node's own journal, so a restarted node reports the same progress to the
coordinator as before its restart (promotion ranks the copies by it). Per shard one small
stream, ``%ledger/<type>/<shard>`` (`LEDGER_PREFIX`: a persistence id no entity of a
replicated type may have), holds JSON facts, one per entry:

- ``{"held": id}``: the journal may hold entries of the id. Written before the node writes
  the id's first entry (a crash in between lists an id without entries: harmless).
- ``{"epoch": e}``: the node holds entries it took from, or wrote as, the primary at epoch
  ``e`` (implies a fence at ``e``). Written before such a write is acknowledged.
- ``{"fence": e}``: refuse the shard's pushes of primaries older than ``e``. Written before
  the store answers the coordinator's promotion question (which fences it).

Each fact is written once, when it first becomes true (new id, higher epoch), so a node's
steady writes add nothing. A shard's stream is replayed once per node run, when the shard is
first used (`ShardLedger.load`); the highest sequence numbers are read back from the journal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import final

from casty.abc import Journal, JournalEntry
from casty.errors import SequenceConflict, WriteRejected

__all__ = ["LEDGER_PREFIX", "ShardLedger"]

LEDGER_PREFIX = "%ledger/"
"""Persistence ids starting with it are the ledgers' streams; a replicated type's entities
may not use them (`ShardLedger.hold` raises `WriteRejected`)."""

_SERIALIZER = "json"
_MANIFEST = "casty.replication.ledger"
_READS = 64  # ids whose highest numbers a rebuild reads at once
_CONFLICTS = 5  # times an append retries after another writer took its number


@dataclass(slots=True)
class _Shard:
    fence: int = 0  # the newest epoch this node has seen for the shard; older pushes are refused
    epoch: int = 0  # the newest primary epoch whose entries this node's journal holds
    highest: dict[str, int] = field(default_factory=dict)  # persistence id -> highest number
    # Durable bookkeeping (with a journal only).
    loading: asyncio.Future[None] | None = None  # the rebuild from the stream
    ready: bool = False  # the rebuild finished (`load` returns at once)
    stored_fence: int = 0  # the fence the stream promises (its fence and epoch facts)
    stored_epoch: int = 0
    stream_highest: int = 0  # the stream's last sequence number
    pending: list[dict[str, object]] = field(default_factory=list)  # facts not yet written
    queued: int = 0  # facts appended so far; the first ``flushed`` of them are written
    flushed: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@final
class ShardLedger:
    """Per shard: the fencing epoch, and which persistence ids this node's journal holds.

    One per node and sharded type, shared by the region (its primaries record their writes and
    recoveries) and its replica store (it records what it stores and answers
    `casty.replication.protocol.GetShardProgress` from it). With ``journal`` (the node's
    journal; ``type_name`` names the type's streams) it is durable (module docstring): callers
    ``await`` `load` before reading a shard, and the async methods return once their facts are
    in the journal (they raise what ``journal.write`` raises, `JournalUnavailable` say).
    Without a journal it is in memory only and the async methods never wait.

    Not thread-safe; used from the node's event loop only.
    """

    __slots__ = ("_journal", "_shards", "_type_name")

    def __init__(self, journal: Journal | None = None, type_name: str = "") -> None:
        self._journal = journal
        self._type_name = type_name
        self._shards: dict[int, _Shard] = {}

    def _shard(self, shard_id: int) -> _Shard:
        shard = self._shards.get(shard_id)
        if shard is None:
            shard = self._shards[shard_id] = _Shard()
        return shard

    def stream_id(self, shard_id: int) -> str:
        """The persistence id of ``shard_id``'s stream in the node's journal."""
        return f"{LEDGER_PREFIX}{self._type_name}/{shard_id}"

    async def load(self, shard_id: int) -> None:
        """Rebuild ``shard_id`` from its stream and the journal, once (later calls return at
        once); what was recorded in memory meanwhile is kept (the higher of both).

        Raises:
            JournalUnavailable: the journal failed (a later call tries again).
        """
        if self._journal is None:
            return
        shard = self._shard(shard_id)
        loading = shard.loading
        if loading is None or (
            loading.done() and (loading.cancelled() or loading.exception() is not None)
        ):
            loading = shard.loading = asyncio.ensure_future(self._rebuild(shard_id, shard))
        elif loading.done():
            return
        await asyncio.shield(loading)  # shared by every caller: one caller's cancel stops none

    def loaded(self, shard_id: int) -> bool:
        """Whether `load` of ``shard_id`` has finished (it would return at once)."""
        if self._journal is None:
            return True
        shard = self._shards.get(shard_id)
        return shard is not None and shard.ready

    async def _rebuild(self, shard_id: int, shard: _Shard) -> None:
        journal = self._journal
        assert journal is not None
        held: list[str] = []
        async for entry in journal.replay(self.stream_id(shard_id)):
            fact = json.loads(entry.payload)
            if "held" in fact:
                held.append(fact["held"])
            shard.stored_fence = max(shard.stored_fence, fact.get("fence", 0), fact.get("epoch", 0))
            shard.stored_epoch = max(shard.stored_epoch, fact.get("epoch", 0))
            shard.stream_highest = entry.sequence_nr
        shard.fence = max(shard.fence, shard.stored_fence)
        shard.epoch = max(shard.epoch, shard.stored_epoch)
        for start in range(0, len(held), _READS):
            ids = held[start : start + _READS]
            numbers = await asyncio.gather(*(journal.highest_sequence_nr(p) for p in ids))
            for pid, highest in zip(ids, numbers, strict=True):
                shard.highest[pid] = max(shard.highest.get(pid, 0), highest)
        shard.ready = True

    async def _append(self, shard_id: int, shard: _Shard, fact: dict[str, object]) -> None:
        """Write ``fact`` to the shard's stream; facts appended meanwhile share one write."""
        shard.pending.append(fact)
        shard.queued += 1
        mine = shard.queued
        async with shard.lock:
            if shard.flushed >= mine:
                return  # an earlier caller wrote it with its own
            facts, upto = shard.pending, shard.queued
            shard.pending = []
            try:
                await self._write(shard_id, shard, facts)
            except BaseException:
                shard.pending[:0] = facts  # the next caller writes them again
                raise
            shard.flushed = upto

    async def _write(
        self, shard_id: int, shard: _Shard, facts: Sequence[dict[str, object]]
    ) -> None:
        journal = self._journal
        assert journal is not None
        stream = self.stream_id(shard_id)
        for attempt in range(_CONFLICTS):
            start = shard.stream_highest + 1
            entries = [
                JournalEntry(stream, start + i, json.dumps(f).encode(), _SERIALIZER, _MANIFEST)
                for i, f in enumerate(facts)
            ]
            try:
                await journal.write(entries)
            except SequenceConflict:
                # Another writer of the stream (a shared journal's other nodes, a restarted
                # region's predecessor): the facts are independent, append after its entries.
                if attempt == _CONFLICTS - 1:
                    raise
                shard.stream_highest = await journal.highest_sequence_nr(stream)
                continue
            shard.stream_highest = entries[-1].sequence_nr
            return

    def fence(self, shard_id: int) -> int:
        """The newest epoch seen for ``shard_id`` (0 if none): pushes of an older one are stale."""
        shard = self._shards.get(shard_id)
        return 0 if shard is None else shard.fence

    def raise_fence(self, shard_id: int, epoch: int) -> None:
        """From now on refuse pushes of ``shard_id`` older than ``epoch`` (never lowers it); in
        memory only (see `persist_fence`)."""
        shard = self._shard(shard_id)
        shard.fence = max(shard.fence, epoch)

    async def persist_fence(self, shard_id: int, epoch: int) -> None:
        """`raise_fence`, and keep the fence across a restart (the store's promise to the
        coordinator that asked)."""
        await self.load(shard_id)
        self.raise_fence(shard_id, epoch)
        shard = self._shard(shard_id)
        if self._journal is not None and epoch > shard.stored_fence:
            await self._append(shard_id, shard, {"fence": epoch})
            shard.stored_fence = max(shard.stored_fence, epoch)

    async def hold(self, shard_id: int, persistence_id: str) -> None:
        """List ``persistence_id`` under ``shard_id``; call it before writing the id's entries.

        Raises:
            WriteRejected: the id starts with `LEDGER_PREFIX`.
        """
        shard = self._shards.get(shard_id)
        if shard is not None and persistence_id in shard.highest:
            return  # the usual case: no wait
        if persistence_id.startswith(LEDGER_PREFIX):
            raise WriteRejected(
                f"persistence id {persistence_id!r}: ids starting with {LEDGER_PREFIX!r} are "
                "reserved for replication's ledgers"
            )
        await self.load(shard_id)
        shard = self._shard(shard_id)
        if persistence_id in shard.highest:
            return
        if self._journal is not None:
            await self._append(shard_id, shard, {"held": persistence_id})
        shard.highest.setdefault(persistence_id, 0)

    def holds(self, shard_id: int, persistence_id: str) -> bool:
        """Whether ``persistence_id`` is listed under ``shard_id`` (`hold` would return at once)."""
        shard = self._shards.get(shard_id)
        return shard is not None and persistence_id in shard.highest

    def record_now(self, shard_id: int, epoch: int, persistence_id: str, highest: int) -> bool:
        """`record` when it needs no wait (the shard is loaded, ``epoch`` adds no fact): True
        when recorded; False when the caller must ``await record(...)`` instead."""
        shard = self._shards.get(shard_id)
        if shard is None or (
            self._journal is not None and (not shard.ready or epoch > shard.stored_epoch)
        ):
            return False
        _note(shard, epoch, persistence_id, highest)
        return True

    async def record(self, shard_id: int, epoch: int, persistence_id: str, highest: int) -> None:
        """This node's journal holds ``persistence_id`` up to ``highest``, pushed or written at
        ``epoch`` (the primary's epoch); raises the fence to ``epoch``. Call it before the write
        is acknowledged: a higher epoch is kept across a restart."""
        await self.load(shard_id)
        shard = self._shard(shard_id)
        _note(shard, epoch, persistence_id, highest)
        if self._journal is not None and epoch > shard.stored_epoch:
            await self._append(shard_id, shard, {"epoch": epoch})
            shard.stored_epoch = max(shard.stored_epoch, epoch)
            shard.stored_fence = max(shard.stored_fence, epoch)

    def progress(self, shard_id: int) -> tuple[int, int]:
        """``(epoch, total)``: the newest primary epoch held, and the sum of the highest
        sequence numbers held over the shard's ids; the higher pair is the more advanced copy."""
        shard = self._shards.get(shard_id)
        if shard is None:
            return 0, 0
        return shard.epoch, sum(shard.highest.values())

    def persistence_ids(self, shard_id: int) -> frozenset[str]:
        """The ids of ``shard_id`` recorded here."""
        shard = self._shards.get(shard_id)
        return frozenset(() if shard is None else shard.highest)


def _note(shard: _Shard, epoch: int, persistence_id: str, highest: int) -> None:
    """Raise ``shard``'s fence and epoch to ``epoch`` and the id's highest to ``highest``, in
    memory (`ShardLedger.record` stores a new epoch too)."""
    if epoch > shard.fence:
        shard.fence = epoch
    if epoch > shard.epoch:
        shard.epoch = epoch
    if highest > shard.highest.get(persistence_id, 0):
        shard.highest[persistence_id] = highest
