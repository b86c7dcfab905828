"""`replica_store`: the replica side; stores the entries primaries push, and answers for them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from casty.abc import Journal, JournalEntry
from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.errors import JournalUnavailable, SequenceConflict, StaleEpoch
from casty.replication.protocol import (
    GetReplicaHighest,
    ReplicaBehind,
    ReplicaDiverged,
    ReplicaFenced,
    ReplicaHighest,
    Replicate,
    Replicated,
)

__all__ = ["replica_store"]

_log = logging.getLogger(__name__)


def replica_store(journal: Journal) -> Behavior[Any]:
    """A replica store over ``journal`` (the node's own journal); spawn one per node.

    It handles `Replicate` (answering `Replicated`, `ReplicaBehind` or `ReplicaFenced` to the
    message's ``reply_to``, or nothing when ``reply_to`` is None) and `GetReplicaHighest`.
    Messages are handled one at a time, so the writes of one id never race inside the store.

    Idempotent: entries it already holds are acknowledged again without a write, so a primary
    may resend a batch after a lost answer; a different entry at a number it holds (another
    epoch's history) is answered `ReplicaDiverged`, never acknowledged. Fencing: entries whose
    epoch is lower than the epoch of the last entry it holds for the id are refused
    (`ReplicaFenced`), and the journal refuses them too (`StaleEpoch`). A failing journal
    (`JournalUnavailable`) gets no answer: the primary's write then times out
    (`ReplicationTimeout`), which is the honest outcome.
    """

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        try:
            if isinstance(msg, Replicate):
                if msg.entries:
                    answer = await _store(journal, msg)
                    if msg.reply_to is not None:
                        msg.reply_to.tell(answer)
            elif isinstance(msg, GetReplicaHighest):
                highest = await journal.highest_sequence_nr(msg.persistence_id)
                msg.reply_to.tell(ReplicaHighest(msg.persistence_id, highest, ctx.self))
        except JournalUnavailable as exc:
            # No answer: the asker times out, which tells it the truth (nothing confirmed).
            _log.warning("replica store could not use its journal: %s", exc)
        return Behaviors.same()

    return Behaviors.receive(receive)


async def _last_epoch(journal: Journal, persistence_id: str, highest: int) -> int:
    async for entry in journal.replay(persistence_id, highest, highest, limit=1):
        return entry.epoch
    return 0  # deleted, or never written


async def _store(journal: Journal, msg: Replicate) -> object:
    entries = msg.entries
    pid = entries[0].persistence_id
    try:
        highest = await journal.highest_sequence_nr(pid)
        if entries[0].sequence_nr > highest + 1:
            return ReplicaBehind(pid, highest, msg.batch)
        stored_epoch = await _last_epoch(journal, pid, highest) if highest else 0
        if entries[-1].epoch < stored_epoch:
            return ReplicaFenced(pid, stored_epoch, msg.batch)
        if entries[0].sequence_nr <= highest:
            diverged = await _first_difference(journal, entries, highest)
            if diverged is not None:
                return ReplicaDiverged(pid, diverged, msg.batch)
        missing = [e for e in entries if e.sequence_nr > highest]
        for run in _epoch_runs(missing):
            await journal.write(run)
        return Replicated(pid, max(highest, entries[-1].sequence_nr), msg.batch)
    except StaleEpoch:
        highest = await journal.highest_sequence_nr(pid)
        return ReplicaFenced(pid, await _last_epoch(journal, pid, highest), msg.batch)
    except SequenceConflict:
        # Another writer of this journal (the node's own primary) got there first.
        return ReplicaBehind(pid, await journal.highest_sequence_nr(pid), msg.batch)


async def _first_difference(
    journal: Journal, entries: Sequence[JournalEntry], highest: int
) -> int | None:
    """The first number at which the stored entries differ from ``entries``, or None."""
    first = entries[0].sequence_nr
    stored = journal.replay(entries[0].persistence_id, first, min(highest, entries[-1].sequence_nr))
    async for entry in stored:
        sent = entries[entry.sequence_nr - first]
        if (entry.epoch, entry.payload) != (sent.epoch, sent.payload):
            return entry.sequence_nr
    return None


def _epoch_runs(entries: Sequence[JournalEntry]) -> list[list[JournalEntry]]:
    """Split catch-up entries into runs of one epoch (a journal write holds one epoch)."""
    runs: list[list[JournalEntry]] = []
    for entry in entries:
        if runs and runs[-1][-1].epoch == entry.epoch:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs
