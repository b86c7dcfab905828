"""`pull_missing`: a promoted primary takes, from its peers, the entries of an id it lacks.

The coordinator promotes the replica whose copy of the shard is the most advanced
(`casty.replication.protocol.GetShardProgress`), but a per-shard measure cannot say that one
copy holds every acknowledged event of every id: with ``min_acks < replicas`` one write may
have reached only replica B and another only replica C. So a promoted primary, the first time
it recovers an entity of the shard, asks the shard's other replica stores (and the type's
store on every other up node: `ShardReplicas.peers`) for the id's highest entry and copies
the entries it lacks from the most advanced one, replacing its own entries where the logs
differ (a lost primary's unconfirmed writes of an older epoch). Every acknowledged write
reached ``min_acks`` stores; when fewer of them were lost with the primary, one that answers
holds it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from casty.abc import Journal, JournalEntry
from casty.errors import SequenceConflict, StaleEpoch, WriteRejected
from casty.replication.protocol import (
    READ_LIMIT,
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
    Where the logs differ, ``local``'s entries from the first difference on (an older
    epoch's: a lost primary's unconfirmed writes) are replaced by the store's history
    (`Journal.replace_suffix`; the store's last entry is the newer, so its log wins, as in
    Raft's election rule, Ongaro & Ousterhout 2014, §5.4.1). Nothing is copied when ``local``
    refuses the entries (a journal that cannot replace entries, a newer epoch, a concurrent
    writer): it is logged and left.

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
    start = await _join(system, local, sources, persistence_id, highest, best[1], deadline)
    if start is None:
        return 0
    if start <= highest:
        _log.info(
            "%s: replacing entries from %d on by the history of %s (its last entry: epoch %d, "
            "number %d; ours: epoch %d, number %d)",
            persistence_id, start, sources, *best, *mine,
        )  # fmt: skip
    copied = 0
    while start <= best[1]:
        left = deadline - loop.time()
        if left <= 0:
            break
        read = functools.partial(ReadReplica, persistence_id, start, best[1])
        reply = await _read_any(system, sources, read, left)
        if reply is None or not reply.entries:
            break
        entries: Sequence[JournalEntry] = reply.entries
        if entries[0].sequence_nr != start:
            _log.warning(
                "%s: %s no longer hold %d (deleted); copied %d entries",
                persistence_id, sources, start, copied,
            )  # fmt: skip
            return copied
        try:
            if start <= highest:  # the first page replaces our older history's entries
                await local.replace_suffix(entries)
            else:
                for run in epoch_runs(entries):
                    await local.write(run)
        except (StaleEpoch, SequenceConflict, WriteRejected) as exc:
            _log.warning("%s: could not copy entries from %s: %s", persistence_id, sources, exc)
            return copied
        copied += len(entries)
        start = entries[-1].sequence_nr + 1
    return copied


async def _join(
    system: ActorSystem,
    local: Journal,
    sources: Sequence[ActorRef[Any]],
    persistence_id: str,
    highest: int,
    best: int,
    deadline: float,
) -> int | None:
    """The first number ``local`` (its highest is ``highest``) must take from ``sources``
    (theirs is ``best``): ``highest + 1`` when both logs agree up to it, else the first number
    where they differ (``best`` itself when they agree up to it: our entries after it go).

    First an entry both logs hold is found (going back further each time), then the entries
    after it are compared page by page (`delete_to` removes prefixes only, so both hold them
    all). None when no source answers before ``deadline``, or when either log no longer holds
    the entries to compare (deleted after a snapshot: snapshots are not replicated).
    """
    if highest == 0:
        return 1
    top = min(highest, best)
    anchor, step = top, 16
    while True:
        pair = await _pair(system, local, sources, persistence_id, anchor, anchor, deadline)
        if pair is None:
            return None
        if pair[0] == pair[1]:
            break
        if anchor == 1:
            return 1  # they differ from the first entry on
        anchor, step = max(1, anchor - step), step * 4
    low = anchor + 1
    while low <= top:
        high = min(top, low + READ_LIMIT - 1)
        pair = await _pair(system, local, sources, persistence_id, low, high, deadline)
        if pair is None:
            return None
        for number, (mine, theirs) in enumerate(zip(*pair, strict=True), start=low):
            if mine != theirs:
                return number
        low = high + 1
    return highest + 1 if top == highest else top


async def _pair(
    system: ActorSystem,
    local: Journal,
    sources: Sequence[ActorRef[Any]],
    persistence_id: str,
    low: int,
    high: int,
    deadline: float,
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]] | None:
    """``(epoch, payload)`` of the entries ``low..high`` (at most `READ_LIMIT`) in ``local``
    and in the first source to answer; None when no source answers before ``deadline`` or
    either side lacks one of them."""
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        return None
    read = functools.partial(ReadReplica, persistence_id, low, high)
    reply = await _read_any(system, sources, read, left)
    if reply is None:
        return None
    theirs = [(e.epoch, e.payload) for e in reply.entries]
    mine = [(e.epoch, e.payload) async for e in local.replay(persistence_id, low, high)]
    if len(mine) != high - low + 1 or len(theirs) != len(mine):
        return None
    return mine, theirs


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
