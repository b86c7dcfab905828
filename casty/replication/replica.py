"""`replica_store`: the replica side; stores the entries primaries push, and answers for them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from casty.abc import Journal, JournalEntry
from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.errors import (
    JournalUnavailable,
    ResourceClosed,
    SequenceConflict,
    StaleEpoch,
    WriteRejected,
)
from casty.replication.ledger import ShardLedger
from casty.replication.protocol import (
    CATCH_UP_LIMIT,
    READ_LIMIT,
    GetReplicaHighest,
    GetShardProgress,
    ReadReplica,
    ReplicaBehind,
    ReplicaDiverged,
    ReplicaEntries,
    ReplicaFenced,
    ReplicaHighest,
    Replicate,
    ReplicateBatch,
    Replicated,
    ReplicatedBatch,
    ShardProgress,
)

__all__ = ["epoch_runs", "last_epoch", "replica_store"]

_log = logging.getLogger(__name__)



def replica_store(journal: Journal, ledger: ShardLedger | None = None) -> Behavior[Any]:
    """A replica store over ``journal`` (the node's own journal); spawn one per node.

    It handles `Replicate` (answering `Replicated`, `ReplicaBehind` or `ReplicaFenced` to the
    message's ``reply_to``, or nothing when ``reply_to`` is None), `ReplicateBatch` (its pushes
    as many `Replicate`, answered together by one `ReplicatedBatch`), `GetReplicaHighest`,
    `ReadReplica` and `GetShardProgress`. The pushes of one id are stored one after the other,
    in the order they arrive; pushes of different ids are stored at once (the journal's group
    commit batches them), and the other messages are answered after every push received
    before them is stored. ``ledger`` is the node's `ShardLedger` of the sharded
    type (the region shares it; durable in ``journal``); without one the store keeps its own,
    in memory.

    Idempotent: entries it already holds are acknowledged again without a write, so a primary
    may resend a batch after a lost answer. A push continues the log only after an entry both
    logs hold (`_store`); after it, the store's differing entries are replaced by the
    primary's (the journal needs `Journal.replace_suffix`, else `ReplicaDiverged`). Fencing:
    a push whose primary epoch is lower than the epoch of an entry the store holds for the id
    where they differ, or of its last entry, is refused (`ReplicaFenced`), and the journal
    refuses older entries too (`StaleEpoch`); a push for a shard whose primary epoch is older
    than the shard's fence (the newest epoch the store has seen for the shard, from a push or
    from `GetShardProgress`) is refused too, whatever the id. A failing journal
    (`JournalUnavailable`) gets no answer (None in a batch's answers): the primary's write
    then fails with `ReplicationTimeout` (nothing confirmed, result unknown), which is the
    honest outcome.
    """
    shards = ShardLedger() if ledger is None else ledger
    # The last push of each id still being stored: pushes of one id run one after the other,
    # pushes of different ids at once (so the journal's group commit batches them).
    pushing: dict[str, asyncio.Future[None]] = {}
    tails: dict[str, tuple[int, int]] = {}  # id -> (number, epoch) of the last entry it wrote

    async def push(
        msg: Replicate, previous: asyncio.Future[None] | None, batch: _Answers | None, index: int
    ) -> None:
        """Store ``msg``, then answer it (alone, or as item ``index`` of ``batch``); no answer
        (None in a batch) when the journal fails: nothing is confirmed."""
        pid = msg.entries[0].persistence_id
        answer: object = None
        try:
            if previous is not None:
                await asyncio.wait([previous])
            answer = await _push(journal, shards, msg, tails)
        except (JournalUnavailable, ResourceClosed) as exc:
            _log.warning("replica store could not use its journal: %s", exc)
        except Exception:
            _log.exception("replica store failed to store a push; not answered")
        finally:
            if pushing.get(pid) is asyncio.current_task():
                del pushing[pid]
        if batch is not None:
            batch.answer(index, answer)
        elif msg.reply_to is not None and answer is not None:
            msg.reply_to.tell(answer)

    def start(msg: Replicate, batch: _Answers | None = None, index: int = 0) -> None:
        """Store ``msg`` after the pushes of its id received before it."""
        pid = msg.entries[0].persistence_id
        loop = asyncio.get_running_loop()
        pushing[pid] = loop.create_task(push(msg, pushing.get(pid), batch, index))

    async def pushed(*pids: str) -> None:
        """Wait for the pushes received so far (of ``pids``, or all)."""
        waiting = [pushing[p] for p in pids if p in pushing] if pids else list(pushing.values())
        if waiting:
            await asyncio.wait(waiting)

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if isinstance(msg, ReplicateBatch):
            # Every push of the batch is stored at once (one journal round, mostly), and one
            # message answers them all, once the last is stored.
            try:
                pushes = msg.pushes()
            except (TypeError, ValueError) as exc:
                _log.warning("replica store got a malformed batch (not answered): %s", exc)
                return Behaviors.same()
            batch = _Answers(msg.reply_to, len(pushes))
            if not pushes:
                batch.answer(-1, None)  # nothing to wait for
            for index, request in enumerate(pushes):
                if request.entries:
                    start(request, batch, index)
                else:
                    batch.answer(index, None)
            return Behaviors.same()
        if isinstance(msg, Replicate):
            if msg.entries:
                start(msg)
            return Behaviors.same()
        try:
            if isinstance(msg, GetReplicaHighest):
                pid = msg.persistence_id
                await pushed(pid)
                highest = await journal.highest_sequence_nr(pid)
                epoch = await last_epoch(journal, pid, highest) if highest else 0
                msg.reply_to.tell(ReplicaHighest(pid, highest, ctx.self, epoch))
            elif isinstance(msg, ReadReplica):
                pid = msg.persistence_id
                await pushed(pid)
                read = journal.replay(pid, msg.from_nr, msg.to_nr, limit=READ_LIMIT)
                msg.reply_to.tell(ReplicaEntries(pid, tuple([e async for e in read])))
            elif isinstance(msg, GetShardProgress):
                await pushed()  # the answer must count every push accepted before the fence
                # Kept across a restart; a ledger still rebuilding answers once rebuilt (the
                # coordinator skips a store that does not answer in time, never reads (0, 0)).
                await shards.load(msg.shard)
                fence = shards.fence(msg.shard)  # before the question raises it
                await shards.persist_fence(msg.shard, msg.epoch)
                epoch, total = shards.progress(msg.shard)
                answer = ShardProgress(msg.shard, epoch, total, msg.tag, fence)
                msg.reply_to.tell(answer)
        except (JournalUnavailable, ResourceClosed) as exc:
            # No answer: the asker times out, which tells it the truth (nothing confirmed).
            _log.warning("replica store could not use its journal: %s", exc)
        return Behaviors.same()

    return Behaviors.receive(receive)


class _Answers:
    """The answers of one `ReplicateBatch`, told to ``reply_to`` once all are in."""

    __slots__ = ("_answers", "_left", "_reply_to")

    def __init__(self, reply_to: Any, count: int) -> None:
        self._reply_to = reply_to
        self._answers: list[object] = [None] * count
        self._left = count

    def answer(self, index: int, answer: object) -> None:
        """Item ``index``'s answer (index -1: none, the batch is empty)."""
        if index >= 0:
            # The usual answer travels as its number alone (see `ReplicatedBatch`).
            self._answers[index] = answer.highest if type(answer) is Replicated else answer
        self._left -= 1
        if self._left <= 0 and self._reply_to is not None:
            self._reply_to.tell(ReplicatedBatch(tuple(self._answers)))


async def last_epoch(journal: Journal, persistence_id: str, highest: int) -> int:
    """The epoch of ``journal``'s entry ``highest`` of the id; 0 when it holds none."""
    async for entry in journal.replay(persistence_id, highest, highest, limit=1):
        return entry.epoch
    return 0  # deleted, or never written


async def _push(
    journal: Journal, shards: ShardLedger, msg: Replicate, tails: dict[str, tuple[int, int]]
) -> object:
    """Store a push, fenced by its shard's epoch when it names one."""
    shard = msg.shard
    if shard < 0:
        return await _store(journal, msg, tails)
    if not shards.loaded(shard):  # the usual push skips the ledger's awaits
        await shards.load(shard)
    fence = shards.fence(shard)
    pid = msg.entries[0].persistence_id
    if msg.epoch < fence:
        _log.info(
            "replica store refused a push of shard %d at epoch %d: fenced at epoch %d",
            shard,
            msg.epoch,
            fence,
        )
        return ReplicaFenced(pid, fence, msg.batch)
    if not shards.holds(shard, pid):
        await shards.hold(shard, pid)  # before its first entry
    answer = await _store(journal, msg, tails)
    if isinstance(answer, Replicated) and not shards.record_now(
        shard, msg.epoch, pid, answer.highest
    ):
        await shards.record(shard, msg.epoch, pid, answer.highest)
    return answer


async def _store(
    journal: Journal, msg: Replicate, tails: dict[str, tuple[int, int]]
) -> object:
    """Store ``msg``'s entries (or say why not), appending only after an entry both logs hold.

    Log matching (Raft, Ongaro & Ousterhout 2014, §5.3): an entry (number, epoch) is created
    once, by that epoch's primary, so when this store's last entry and the first pushed one
    have the same epoch, the push continues the store's log. When another epoch wrote the
    store's last entry, or the first pushed entry differs from the stored one, the store asks
    for earlier entries (`ReplicaBehind` below the push) until the push starts with an entry
    both logs hold. After it, as a Raft follower does, the store replaces its differing
    entries by the primary's (`Journal.replace_suffix`): the primary's pull (`pull_missing`)
    took the most advanced history of the id from every store up at its promotion. A store
    holding an entry of a newer epoch than the pushing primary refuses it (`ReplicaFenced`: a
    newer primary exists); one whose differing entries are newer than the pushed ones (a
    catch-up of old entries) keeps them for now (`ReplicaDiverged`).
    ``tails`` caches the last entry this store wrote per id, so the usual push needs no read.
    """
    entries = msg.entries
    first = entries[0]
    pid = first.persistence_id
    try:
        if tails.get(pid) == (first.sequence_nr - 1, first.epoch) and (
            first.epoch == entries[-1].epoch
        ):
            # The usual push: one write, no read. A stale cache (the node's own primary wrote
            # since) only lags, and the journal refuses the taken number.
            try:
                await journal.write(entries)
            except SequenceConflict:
                pass  # the full path below finds out why
            else:
                tails[pid] = (entries[-1].sequence_nr, first.epoch)
                return Replicated(pid, entries[-1].sequence_nr, msg.batch)
        highest = await journal.highest_sequence_nr(pid)
        if first.sequence_nr > highest + 1:
            return ReplicaBehind(pid, highest, msg.batch)
        if first.sequence_nr <= highest:
            differs = await _first_difference(journal, entries, highest)
            if differs is None:
                if entries[-1].sequence_nr <= highest:
                    # Held already, entry for entry: confirming writes nothing, whatever the
                    # epoch (a promoted primary's catch-up may arrive after its next write).
                    # Confirmed up to the push's last entry only: past it the logs may differ.
                    return Replicated(pid, entries[-1].sequence_nr, msg.batch)
                missing = [e for e in entries if e.sequence_nr > highest]
                return await _append(journal, missing, tails, msg)
            if differs.sequence_nr == first.sequence_nr > 1:
                # Resend from further back, twice as much each time (a long divergence takes a
                # few rounds, not one per entry), but never so far that the primary's catch-up
                # chunk would stop short of the entry that differed.
                back = first.sequence_nr - 1 - min(len(entries), CATCH_UP_LIMIT // 2)
                return ReplicaBehind(pid, max(0, back), msg.batch)
            if msg.epoch < differs.epoch:
                return ReplicaFenced(pid, differs.epoch, msg.batch)  # a newer primary wrote it
            replacing = entries[differs.sequence_nr - first.sequence_nr :]
            try:
                await journal.replace_suffix(replacing)
            except (StaleEpoch, WriteRejected):
                # Its entries are newer than the pushed ones (a catch-up of old entries: the
                # primary's own next write replaces them), or the journal cannot replace any.
                return ReplicaDiverged(pid, differs.sequence_nr, msg.batch)
            tails[pid] = (replacing[-1].sequence_nr, replacing[-1].epoch)
            _log.info(
                "%s: replaced entries from %d on (epoch %d) by the primary's (epoch %d)",
                pid,
                differs.sequence_nr,
                differs.epoch,
                replacing[0].epoch,
            )
            return Replicated(pid, replacing[-1].sequence_nr, msg.batch)
        stored_epoch = await last_epoch(journal, pid, highest) if highest else 0
        if max(msg.epoch, entries[-1].epoch) < stored_epoch:
            return ReplicaFenced(pid, stored_epoch, msg.batch)
        if highest and stored_epoch != first.epoch:
            return ReplicaBehind(pid, highest - 1, msg.batch)  # resend ``highest``: compare it
        return await _append(journal, entries, tails, msg)
    except StaleEpoch:
        highest = await journal.highest_sequence_nr(pid)
        return ReplicaFenced(pid, await last_epoch(journal, pid, highest), msg.batch)
    except SequenceConflict:
        # Another writer of this journal (the node's own primary) got there first.
        return ReplicaBehind(pid, await journal.highest_sequence_nr(pid), msg.batch)


async def _append(
    journal: Journal,
    missing: Sequence[JournalEntry],
    tails: dict[str, tuple[int, int]],
    msg: Replicate,
) -> Replicated:
    for run in epoch_runs(missing):
        await journal.write(run)
    last = missing[-1]
    tails[last.persistence_id] = (last.sequence_nr, last.epoch)
    return Replicated(last.persistence_id, last.sequence_nr, msg.batch)


async def _first_difference(
    journal: Journal, entries: Sequence[JournalEntry], highest: int
) -> JournalEntry | None:
    """The first stored entry that differs from the one ``entries`` holds at its number."""
    first = entries[0].sequence_nr
    stored = journal.replay(entries[0].persistence_id, first, min(highest, entries[-1].sequence_nr))
    async for entry in stored:
        sent = entries[entry.sequence_nr - first]
        if (entry.epoch, entry.payload) != (sent.epoch, sent.payload):
            return entry
    return None


def epoch_runs(entries: Sequence[JournalEntry]) -> list[list[JournalEntry]]:
    """Split catch-up entries into runs of one epoch (a journal write holds one epoch)."""
    runs: list[list[JournalEntry]] = []
    for entry in entries:
        if runs and runs[-1][-1].epoch == entry.epoch:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs
