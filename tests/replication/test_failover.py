"""Promotion of the most advanced replica, catch-up of a lagging one, and fencing."""

from __future__ import annotations

from pathlib import Path

import pytest
from replication_support import (
    Added,
    Refused,
    add,
    connect,
    counter,
    nodes,
    stored,
    total,
    write_alone,
)

from casty.errors import ReplicationTimeout, StaleEpoch
from casty.replication import ReplicationConfig, pull_missing
from casty.testing import FakeNetwork

pytestmark = pytest.mark.slow


async def test_a_promoted_lagging_replica_pulls_every_acked_event_from_its_peer() -> None:
    network = FakeNetwork()
    async with nodes(3, network) as (a, b, c):
        # C is cut off from the primary: only B confirms (min_acks=1), so C lags behind.
        network.partition("node-0", "node-2")
        config = ReplicationConfig(replicas=2, min_acks=1, ack_timeout=5.0)
        primary = a.replicated([a.remote(b), a.remote(c)], config)
        entity = a.system.spawn(counter("acct", primary, epoch=1), "acct")
        acked = [await add(a, entity, n) for n in (1, 2, 3, 4)]
        assert acked == [Added(1), Added(3), Added(6), Added(10)]
        await a.system.shutdown()  # the primary's node is gone

        network.heal()
        # C is promoted although it lags: before serving it copies what B holds beyond it.
        assert await stored(c.journal, "acct") == []
        assert await pull_missing(c.system, c.journal, [c.remote(b)], "acct", timeout=5.0) == 4
        assert await pull_missing(c.system, c.journal, [c.remote(b)], "acct", timeout=5.0) == 0
        promoted = c.system.spawn(
            counter("acct", c.replicated([c.remote(b)], config), epoch=2), "acct"
        )
        assert await total(c, promoted) == 10
        assert await add(c, promoted, 5) == Added(15)
        # B took the new event (epoch 2) after the four old ones (epoch 1).
        assert await stored(b.journal, "acct") == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2)]
        assert await stored(c.journal, "acct") == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2)]


async def test_pull_missing_replaces_an_older_epochs_entries_and_skips_a_silent_peer() -> None:
    network = FakeNetwork()
    async with nodes(3, network) as (a, b, c):
        # B holds seq 1..2 of epoch 1; C holds seq 1..2 of epoch 2 (the newer history).
        assert await write_alone(b, "h", 1, [1, 2]) == [Added(1), Added(3)]
        assert await write_alone(c, "h", 2, [7, 8]) == [Added(7), Added(15)]
        # A holds its own seq 1..3 of epoch 1 (a lost primary's unconfirmed writes): from the
        # first entry on, C's newer history replaces them, the surplus third entry included.
        await write_alone(a, "h", 1, [5, 6, 7])
        assert await pull_missing(a.system, a.journal, [a.remote(c)], "h", timeout=5.0) == 2
        assert await stored(a.journal, "h") == [(1, 2), (2, 2)]
        assert await total(a, a.system.spawn(counter("h", a.journal, epoch=3), "h")) == 15
        # B is silent: the pull gives up within its budget and copies nothing.
        network.partition("node-0", "node-1")
        assert await pull_missing(a.system, a.journal, [a.remote(b)], "h", timeout=0.3) == 0
        assert await stored(a.journal, "h") == [(1, 2), (2, 2)]


async def test_pull_missing_keeps_the_entries_both_logs_share() -> None:
    async with nodes(2) as (a, b):
        # Both hold 1..2 of epoch 1; A then wrote 3 at epoch 1 (never confirmed) and B, the
        # promoted primary at epoch 2, wrote 3..4.
        for node in (a, b):
            assert await write_alone(node, "p", 1, [1, 2]) == [Added(1), Added(3)]
        assert await write_alone(a, "p", 1, [100]) == [Added(103)]
        assert await write_alone(b, "p", 2, [3, 4]) == [Added(6), Added(10)]
        assert await pull_missing(a.system, a.journal, [a.remote(b)], "p", timeout=5.0) == 2
        assert await stored(a.journal, "p") == [(1, 1), (2, 1), (3, 2), (4, 2)]
        assert await total(a, a.system.spawn(counter("p", a.journal, epoch=3), "p")) == 10


async def test_old_primary_is_fenced_after_promotion_and_its_late_writes_never_show() -> None:
    network = FakeNetwork()
    async with nodes(2, network) as (a, b):
        await connect(a, b)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=1.0)
        old = a.system.spawn(counter("k", a.replicated([a.remote(b)], config), epoch=1), "k")
        assert await add(a, old, 1) == Added(1)

        network.partition("node-0", "node-1")
        during = await add(a, old, 100)  # cannot reach its replica: unknown, never a success
        assert isinstance(during, Refused) and isinstance(during.cause, ReplicationTimeout)

        # The coordinator promotes B at epoch 2 (B held every acknowledged event).
        promoted = b.system.spawn(counter("k", b.journal, epoch=2), "k")
        assert await total(b, promoted) == 1
        assert await add(b, promoted, 10) == Added(11)

        network.heal()
        # The old primary comes back (a new incarnation on A, still at epoch 1) and writes.
        late = a.system.spawn(counter("k", a.replicated([a.remote(b)], config), epoch=1), "k-late")
        answer = await add(a, late, 1000)
        assert isinstance(answer, Refused)
        assert isinstance(answer.cause, StaleEpoch)

        # Nothing of epoch 1 after the promotion is in B's journal or state.
        assert await stored(b.journal, "k") == [(1, 1), (2, 2)]
        assert await total(b, promoted) == 11
        restarted = b.system.spawn(counter("k", b.journal, epoch=2), "k-again")
        assert await total(b, restarted) == 11


async def test_promotion_with_per_node_sqlite_files(tmp_path: Path) -> None:
    async with nodes(2, sqlite_dir=tmp_path) as (a, b):
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=5.0)
        entity = a.system.spawn(counter("s", a.replicated([a.remote(b)], config), epoch=1), "s")
        for n in range(1, 4):
            assert await add(a, entity, n) == Added(n * (n + 1) // 2)
        await a.system.shutdown()
        assert await b.journal.highest_sequence_nr("s") == 3
        promoted = b.system.spawn(counter("s", b.journal, epoch=2), "s")
        assert await total(b, promoted) == 6
        assert await add(b, promoted, 4) == Added(10)
        assert await stored(b.journal, "s") == [(1, 1), (2, 1), (3, 1), (4, 2)]


async def test_a_replica_holding_an_older_epochs_unconfirmed_entry_takes_the_new_history() -> (
    None
):
    async with nodes(2) as (b, c):
        # C holds seq 1 of an old primary (epoch 1) that B, promoted at epoch 2, never saw.
        stale = c.system.spawn(counter("d", c.journal, epoch=1), "d-old")
        assert await add(c, stale, 7) == Added(7)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=2.0)
        primary = b.system.spawn(counter("d", b.replicated([b.remote(c)], config), epoch=2), "d")
        assert await add(b, primary, 5) == Added(5)
        assert await stored(c.journal, "d") == [(1, 2)]
        assert await total(c, c.system.spawn(counter("d", c.journal, epoch=3), "d")) == 5
