"""`most_advanced_replica`: which replica store a failed primary's successor should be."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from casty.errors import ReplicationError
from casty.replication.protocol import GetReplicaHighest, ReplicaHighest

if TYPE_CHECKING:
    from casty.actors.ref import ActorRef
    from casty.actors.system import ActorSystem

__all__ = ["most_advanced_replica"]


async def most_advanced_replica(
    system: ActorSystem,
    stores: Sequence[ActorRef[Any]],
    persistence_id: str,
    *,
    timeout: float = 2.0,
) -> ReplicaHighest:
    """Ask every store for its highest sequence number of ``persistence_id``; pick the highest.

    Every write acknowledged to a client reached ``min_acks >= 1`` stores, so when no more
    than ``min_acks - 1`` of them are lost with the primary, the store with the highest
    sequence number holds every acknowledged event: promoting it loses none. Ties go to the
    earliest store in ``stores``. Stores that do not answer within ``timeout`` seconds are
    left out.

    Returns:
        The winning answer (``store`` is the store's ref, ``sequence_nr`` its highest).

    Raises:
        ReplicationError: no store answered.
    """

    async def ask(store: ActorRef[Any]) -> ReplicaHighest:
        answer: ReplicaHighest = await system.ask(
            store, lambda r: GetReplicaHighest(persistence_id, r), timeout=timeout
        )
        return answer

    answers = await asyncio.gather(*(ask(s) for s in stores), return_exceptions=True)
    best: ReplicaHighest | None = None
    for answer in answers:
        if isinstance(answer, asyncio.CancelledError):
            raise answer
        if isinstance(answer, ReplicaHighest) and (
            best is None or answer.sequence_nr > best.sequence_nr
        ):
            best = answer
    if best is None:
        raise ReplicationError(f"no replica store of {persistence_id} answered within {timeout} s")
    return best
