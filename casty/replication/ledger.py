"""`ShardLedger`: what one node's journal holds of each shard of a replicated sharded type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import final

__all__ = ["ShardLedger"]


@dataclass(slots=True)
class _Shard:
    fence: int = 0  # the newest epoch this node has seen for the shard; older pushes are refused
    epoch: int = 0  # the newest primary epoch whose entries this node's journal holds
    highest: dict[str, int] = field(default_factory=dict)  # persistence id -> highest number


@final
class ShardLedger:
    """Per shard: the fencing epoch, and which persistence ids this node's journal holds.

    One per node and sharded type, shared by the region (its primaries record their writes and
    recoveries) and its replica store (it records what it stores and answers
    `casty.replication.protocol.GetShardProgress` from it). In memory only: after a restart a
    node reports no progress for a shard until its entities write or recover again, which
    makes it the last choice for promotion, never a wrong one (its journal is still read).

    Not thread-safe; used from the node's event loop only.
    """

    __slots__ = ("_shards",)

    def __init__(self) -> None:
        self._shards: dict[int, _Shard] = {}

    def _shard(self, shard_id: int) -> _Shard:
        shard = self._shards.get(shard_id)
        if shard is None:
            shard = self._shards[shard_id] = _Shard()
        return shard

    def fence(self, shard_id: int) -> int:
        """The newest epoch seen for ``shard_id`` (0 if none): pushes of an older one are stale."""
        shard = self._shards.get(shard_id)
        return 0 if shard is None else shard.fence

    def raise_fence(self, shard_id: int, epoch: int) -> None:
        """From now on refuse pushes of ``shard_id`` older than ``epoch`` (never lowers it)."""
        shard = self._shard(shard_id)
        shard.fence = max(shard.fence, epoch)

    def record(self, shard_id: int, epoch: int, persistence_id: str, highest: int) -> None:
        """This node's journal holds ``persistence_id`` up to ``highest``, pushed or written at
        ``epoch`` (the primary's epoch); raises the fence to ``epoch``."""
        shard = self._shard(shard_id)
        shard.fence = max(shard.fence, epoch)
        shard.epoch = max(shard.epoch, epoch)
        if highest > shard.highest.get(persistence_id, 0):
            shard.highest[persistence_id] = highest

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
