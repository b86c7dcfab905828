"""Diverged logs repaired per id, as Raft does (found by a review of the first version).

A replica store steps back until a push starts with an entry both logs hold and replaces its
differing entries by the primary's; a promoted primary's pull adopts the most advanced
history. These cases broke the first version: a long divergence walked back past the
primary's catch-up chunk and a store confirmed a write it did not hold; a pull compared
entries past one read (1,000 entries) or deleted ones as if they matched and mixed two
histories; a restarted former primary holding an unconfirmed entry of a newer epoch than
the promoted primary's refused its pushes for good; a store behind the primary's deleted
entries was asked the same push again until the deadline.
"""

from __future__ import annotations

import pytest
from replication_support import connect, nodes, stored

from casty.abc import Journal, JournalEntry
from casty.errors import ReplicationError, ReplicationTimeout, StaleEpoch
from casty.replication import ReplicationConfig, pull_missing

pytestmark = pytest.mark.slow


def entry(pid: str, number: int, epoch: int) -> JournalEntry:
    return JournalEntry(pid, number, f"{epoch}:{number}".encode(), "raw", "", epoch)


async def put(journal: Journal, pid: str, spans: list[tuple[int, int, int]]) -> None:
    """Write ``(first, last, epoch)`` runs of entries."""
    for first, last, epoch in spans:
        await journal.write([entry(pid, n, epoch) for n in range(first, last + 1)])


def runs(log: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """``(first, last, epoch)`` runs of a log of ``(number, epoch)``."""
    out: list[tuple[int, int, int]] = []
    for number, epoch in log:
        if out and out[-1][2] == epoch and out[-1][1] == number - 1:
            out[-1] = (out[-1][0], number, epoch)
        else:
            out.append((number, number, epoch))
    return out


async def test_a_long_divergence_is_repaired_and_never_confirmed_past_what_the_store_holds() -> (
    None
):
    async with nodes(2) as (p, s):
        # S, an old primary at epoch 2, holds its own unconfirmed 1001..2100; P, at epoch 3,
        # holds its own 1001..2023 and writes 2024 at epoch 4.
        await put(p.journal, "v", [(1, 1000, 1), (1001, 2023, 3)])
        await put(s.journal, "v", [(1, 1000, 1), (1001, 2100, 2)])
        await connect(p, s)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=5.0)
        await p.replicated([p.remote(s)], config).write([entry("v", 2024, 4)])
        expected = [(1, 1000, 1), (1001, 2023, 3), (2024, 2024, 4)]
        assert runs(await stored(s.journal, "v")) == expected


async def test_a_pull_compares_every_entry_past_one_read() -> None:
    async with nodes(2) as (a, c):
        # A holds unconfirmed epoch-2 entries from 1050 on; C the epoch-3 history.
        await put(a.journal, "y", [(1, 1049, 1), (1050, 1400, 2)])
        await put(c.journal, "y", [(1, 1049, 1), (1050, 1500, 3)])
        await connect(a, c)
        assert await pull_missing(a.system, a.journal, [a.remote(c)], "y", timeout=5.0) == 451
        assert runs(await stored(a.journal, "y")) == [(1, 1049, 1), (1050, 1500, 3)]


@pytest.mark.parametrize("deleted_to", [6, 15])
async def test_a_pull_never_mixes_histories_when_the_source_deleted_entries(
    deleted_to: int,
) -> None:
    async with nodes(2) as (a, c):
        await put(a.journal, "x", [(1, 4, 1), (5, 6, 2)])
        await put(c.journal, "x", [(1, 4, 1), (5, 20, 3)])
        await c.journal.delete_to("x", deleted_to)  # after a snapshot, say
        await connect(a, c)
        # The entries to compare are gone: nothing is copied (snapshots are not replicated).
        assert await pull_missing(a.system, a.journal, [a.remote(c)], "x", timeout=3.0) == 0
        assert runs(await stored(a.journal, "x")) == [(1, 4, 1), (5, 6, 2)]


async def test_a_restarted_former_primary_takes_the_promoted_primarys_history() -> None:
    async with nodes(2) as (a, b):
        # A (epoch 2) wrote 5 unconfirmed and was lost; B, promoted at 3 with A down, wrote
        # 5 unconfirmed and was lost; A, promoted at 4 with B down, now has B as its replica.
        await put(a.journal, "z", [(1, 4, 1), (5, 5, 2)])
        await put(b.journal, "z", [(1, 4, 1), (5, 5, 3)])
        await connect(a, b)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=5.0)
        primary = a.replicated([a.remote(b)], config)
        await primary.write([entry("z", 6, 4)])
        await primary.write([entry("z", 7, 4)])
        assert runs(await stored(b.journal, "z")) == [(1, 4, 1), (5, 5, 2), (6, 7, 4)]


async def test_a_store_older_than_the_entry_it_holds_is_told_it_was_replaced() -> None:
    async with nodes(2) as (a, b):
        # B holds 5 of epoch 3: a primary at epoch 2 with another 5 is stale.
        await put(a.journal, "s", [(1, 4, 1), (5, 5, 2)])
        await put(b.journal, "s", [(1, 4, 1), (5, 5, 3)])
        await connect(a, b)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=5.0)
        with pytest.raises(StaleEpoch, match="this primary has been replaced"):
            await a.replicated([a.remote(b)], config).write([entry("s", 6, 2)])
        assert runs(await stored(b.journal, "s")) == [(1, 4, 1), (5, 5, 3)]


@pytest.mark.parametrize("diverged", [True, False])
async def test_a_store_behind_the_primarys_deleted_entries_fails_the_write_with_the_reason(
    diverged: bool,
) -> None:
    async with nodes(2) as (p, s):
        await put(p.journal, "w", [(1, 4, 1), (5, 15, 3), (16, 20, 4)])
        await p.journal.delete_to("w", 15)
        await put(s.journal, "w", [(1, 4, 1), (5, 15, 3), *([(16, 16, 3)] if diverged else [])])
        await connect(p, s)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=5.0)
        with pytest.raises(ReplicationTimeout) as raised:
            await p.replicated([p.remote(s)], config).write([entry("w", 21, 4)])
        assert isinstance(raised.value.__cause__, ReplicationError)
        assert "no longer holds" in str(raised.value.__cause__)
