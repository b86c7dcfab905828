"""`Distributed`: the coordination facade of a member (``system.distributed()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casty.actors.ref import ActorRef
from casty.distributed.barrier import await_barrier, barrier_entity
from casty.distributed.lock import DistributedLock, lock_entity
from casty.sharding.behavior import sharded

if TYPE_CHECKING:
    from casty.cluster.system import ClusteredActorSystem

__all__ = ["BARRIER_TYPE", "LOCK_TYPE", "NUM_SHARDS", "Distributed"]

#: The sharded type names of the coordination entities (system actors ``/system/<name>``).
BARRIER_TYPE = "casty-barrier"
LOCK_TYPE = "casty-lock"
#: Shard count of both types, identical on every node.
NUM_SHARDS = 64


class Distributed:
    """Locks and barriers backed by sharded entities of this cluster (no external service).

    Obtained with ``system.distributed()`` (one per system). Creating it spawns, on this node,
    the regions of the two internal sharded types ``"casty-lock"`` and ``"casty-barrier"``
    (system actors, no passivation: an entity keeps a lease or a round in memory).

    **Lazy spawning.** A sharded type's coordinator runs on the oldest member, started by that
    member's region; a member that never called ``distributed()`` hosts no entity, and while the
    oldest member has not called it, requests wait in the regions' buffers (up to the caller's
    timeout). Call ``system.distributed()`` once on every member at start (it is cheap and
    idempotent) when the coordination types are in use; ``system.barrier`` does it for you.

    Args:
        system: the started member this facade works from.
        lock_ttl: the default lease duration of `lock`, in seconds.
    """

    def __init__(self, system: ClusteredActorSystem, *, lock_ttl: float = 10.0) -> None:
        self._system = system
        self._lock_ttl = lock_ttl
        self._locks: ActorRef[Any] = system.system_actor_of(
            sharded(lock_entity, num_shards=NUM_SHARDS, passivate_after=None), LOCK_TYPE
        )
        self._barriers: ActorRef[Any] = system.system_actor_of(
            sharded(barrier_entity, num_shards=NUM_SHARDS, passivate_after=None), BARRIER_TYPE
        )

    def lock(
        self, name: str, *, ttl: float | None = None, auto_renew: bool = True
    ) -> DistributedLock:
        """A handle on the cluster-wide lock ``name`` (see `DistributedLock`).

        Args:
            name: the lock's name (non-empty).
            ttl: the lease duration in seconds (default: this facade's ``lock_ttl``, 10 s).
            auto_renew: renew the lease in the background while held.

        Raises:
            ConfigurationError: a bad name or ttl.
        """
        return DistributedLock(
            self._system,
            self._locks,
            name,
            ttl=self._lock_ttl if ttl is None else ttl,
            auto_renew=auto_renew,
        )

    async def barrier(self, name: str, parties: int, *, timeout: float = 60.0) -> int:
        """Wait at barrier ``name`` until ``parties`` participants arrived; see `await_barrier`.

        All participants are released together; the name can be used again for the next round.

        Returns:
            The round's generation number.

        Raises:
            ConfigurationError: a bad argument, or ``parties`` differs from the waiting round's.
            BarrierBroken: the timeout passed or a waiting participant's node was downed or
                removed (every waiter of the round gets it).
        """
        return await await_barrier(self._system, self._barriers, name, parties, timeout)
