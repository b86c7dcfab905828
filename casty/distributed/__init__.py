"""Distributed coordination backed by sharded entities: leased locks and semaphores, barriers,
counters, maps, sets and work queues.

``system.distributed()`` (a member) or ``client.distributed()`` (a `ClusterClient`) returns
the `Distributed` facade; ``system.barrier(name, n)`` waits at a barrier. See
``docs/distributed.md``.
"""

from __future__ import annotations

from casty.distributed.data import DistributedCounter, DistributedMap, DistributedSet
from casty.distributed.facade import (
    BARRIER_TYPE,
    COUNTER_TYPE,
    LOCK_TYPE,
    MAP_TYPE,
    QUEUE_TYPE,
    SEMAPHORE_TYPE,
    SET_TYPE,
    Distributed,
)
from casty.distributed.lease import Lease
from casty.distributed.lock import DistributedLock
from casty.distributed.queue import DistributedQueue, Reservation
from casty.distributed.semaphore import DistributedSemaphore, SemaphorePermit

__all__ = [
    "BARRIER_TYPE",
    "COUNTER_TYPE",
    "LOCK_TYPE",
    "MAP_TYPE",
    "QUEUE_TYPE",
    "SEMAPHORE_TYPE",
    "SET_TYPE",
    "Distributed",
    "DistributedCounter",
    "DistributedLock",
    "DistributedMap",
    "DistributedQueue",
    "DistributedSemaphore",
    "DistributedSet",
    "Lease",
    "Reservation",
    "SemaphorePermit",
]
