"""`pull_missing`: a promoted primary takes, from its peers, the entries of an id it lacks.

The coordinator promotes the replica whose copy of the shard is the most advanced
(`casty.replication.protocol.GetShardProgress`), but a per-shard measure cannot say that one
copy holds every acknowledged event of every id: with ``min_acks < replicas`` one write may
have reached only replica B and another only replica C. So a promoted primary, the first time
it recovers an entity of the shard, asks the shard's other replica stores (and the type's
store on every other up node: `ShardReplicas.peers`) for the id's highest entry and copies
the entries it lacks from the most advanced one. Every acknowledged
write reached ``min_acks`` stores; when fewer of them were lost with the primary, one that
answers holds it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from casty.abc import Journal, JournalEntry
from casty.errors import SequenceConflict, StaleEpoch
from casty.replication.protocol import (
    GetReplicaHighest,
    ReadReplica,
    ReplicaEntries,
    ReplicaHighest,
)
from casty.replication.replica import epoch_runs, last_epoch

if TYPE_CHECKING:
    from casty.actors.ref import ActorRef
    from casty.actors.system import ActorSystem

__all__ = ["pull_missing"]

_log = logging.getLogger(__name__)


async def pull_missing(
    system: ActorSystem,
    local: Journal,
    stores: Sequence[ActorRef[Any]],
    persistence_id: str,
    *,
    timeout: float,
) -> int:
    """Copy into ``local`` the entries of ``persistence_id`` the most advanced store holds
    beyond ``local``'s highest.

    The most advanced store is the one whose last entry has the highest ``(epoch, sequence
    number)``; stores with the same last entry hold the same log, so each read goes to all of
    them and the first answer is taken (one of them may die meanwhile). Stores that do not
    answer within ``timeout`` seconds are skipped; the reads then get ``timeout`` seconds of
    their own (a pull takes at most twice ``timeout``) and the pull copies what it could.
    Nothing is copied when the store's entry at ``local``'s highest number differs from
    ``local``'s (another epoch's history: journals are append-only, so it is logged and left),
    or when ``local`` refuses the entries (a newer epoch or a concurrent writer).

    Returns:
        How many entries were copied into ``local``.

    Raises:
        JournalUnavailable: ``local`` failed.
    """
    loop = asyncio.get_running_loop()
    highest = await local.highest_sequence_nr(persistence_id)
    mine = (await last_epoch(local, persistence_id, highest) if highest else 0, highest)

    async def ask_highest(store: ActorRef[Any]) -> ReplicaHighest:
        answer: ReplicaHighest = await system.ask(
            store, lambda r: GetReplicaHighest(persistence_id, r), timeout=timeout
        )
        return answer

    answers = await asyncio.gather(*(ask_highest(s) for s in stores), return_exceptions=True)
    for answer in answers:
        if isinstance(answer, asyncio.CancelledError):
            raise answer
    held = [(a.epoch, a.sequence_nr) for a in answers if isinstance(a, ReplicaHighest)]
    if not held or max(held) <= mine:
        return 0
    best = max(held)
    sources = [
        a.store
        for a in answers
        if isinstance(a, ReplicaHighest) and (a.epoch, a.sequence_nr) == best
    ]
    deadline = loop.time() + timeout
    copied = 0
    to_nr = best[1]
    joined = highest == 0  # otherwise re-read our last number: the histories must join there
    start = max(highest, 1)
    while start <= to_nr:
        left = deadline - loop.time()
        if left <= 0:
            break
        read = functools.partial(ReadReplica, persistence_id, start, to_nr)
        reply = await _read_any(system, sources, read, left)
        if reply is None:
            break
        entries: Sequence[JournalEntry] = reply.entries
        if not joined:
            if not entries or not await _same_as_local(local, entries[0]):
                _log.warning(
                    "%s: replica stores %s hold another history at %d; nothing copied",
                    persistence_id,
                    sources,
                    highest,
                )
                return 0
            joined, entries = True, entries[1:]
        if not entries:
            break
        try:
            for run in epoch_runs(entries):
                await local.write(run)
                copied += len(run)
        except (StaleEpoch, SequenceConflict) as exc:
            _log.warning("%s: could not copy entries from %s: %s", persistence_id, sources, exc)
            return copied
        start = entries[-1].sequence_nr + 1
    return copied


async def _read_any(
    system: ActorSystem,
    stores: Sequence[ActorRef[Any]],
    request: Callable[[ActorRef[Any]], ReadReplica],
    timeout: float,
) -> ReplicaEntries | None:
    """The first answer of ``stores`` to ``request`` within ``timeout`` seconds, or None."""

    async def ask(store: ActorRef[Any]) -> ReplicaEntries:
        reply: ReplicaEntries = await system.ask(store, request, timeout=timeout)
        return reply

    pending = {asyncio.ensure_future(ask(s)) for s in stores}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            # Every finished ask's error is looked at (a silent store is simply skipped).
            answers = [t.result() for t in done if not t.cancelled() and t.exception() is None]
            if answers:
                return answers[0]
        return None
    finally:
        for task in pending:
            task.cancel()


async def _same_as_local(local: Journal, entry: JournalEntry) -> bool:
    nr = entry.sequence_nr
    async for mine in local.replay(entry.persistence_id, nr, nr, limit=1):
        return (mine.epoch, mine.payload) == (entry.epoch, entry.payload)
    return False
