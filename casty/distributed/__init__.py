"""Distributed coordination backed by sharded entities: leased locks and barriers.

``system.distributed()`` returns the `Distributed` facade; ``system.barrier(name, n)`` waits at
a barrier. See ``docs/distributed.md``.
"""

from __future__ import annotations

from casty.distributed.facade import BARRIER_TYPE, LOCK_TYPE, Distributed
from casty.distributed.lock import DistributedLock

__all__ = ["BARRIER_TYPE", "LOCK_TYPE", "Distributed", "DistributedLock"]
