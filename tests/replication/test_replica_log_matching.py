"""A replica store appends a new primary's entries only after an entry both logs hold.

Found by the chaos test (``tests/chaos/test_chaos_kill.py`` with a faster nemesis): a node that
was primary at epoch 1 wrote entries its replica never confirmed, was killed, and came back as
the replica of the promoted primary (epoch 2), whose log had other entries at those numbers.
The store appended the new primary's next entry after its own stale ones and acknowledged it;
promoted later, it served a history without the acknowledged epoch-2 entries. Now it refuses
(`ReplicaDiverged`) and tells the coordinator so when asked for its progress, and the
coordinator never promotes such a copy while another region may hold the acknowledged one.
"""

from __future__ import annotations

import pytest
from replication_support import Added, Refused, add, counter, nodes, stored

from casty.errors import ReplicationTimeout
from casty.replication import ReplicatedJournal, ReplicationConfig
from casty.replication.protocol import GetShardProgress, ShardProgress

pytestmark = pytest.mark.slow


async def test_a_store_whose_last_entries_another_epoch_wrote_does_not_acknowledge_the_next() -> (
    None
):
    async with nodes(2) as (a, b):
        # B, primary at epoch 1, wrote 1..3 and never got them confirmed.
        old = b.system.spawn(counter("c", b.journal, epoch=1), "old")
        for _ in range(3):
            await add(b, old, 1)
        await b.system.stop(old)
        # A, primary at epoch 2, holds other entries at 1..3 (confirmed by another replica).
        alone = a.system.spawn(counter("c", a.journal, epoch=2), "alone")
        for _ in range(3):
            await add(a, alone, 10)
        await a.system.stop(alone)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=1.0)
        entity = a.system.spawn(counter("c", a.replicated([a.remote(b)], config), epoch=2), "c")
        answer = await add(a, entity, 10)
        assert answer != Added(40), "B acknowledged entry 4 after a history it does not hold"
        assert isinstance(answer, Refused) and isinstance(answer.cause, ReplicationTimeout)
        assert await stored(b.journal, "c") == [(1, 1), (2, 1), (3, 1)]


async def test_a_store_that_holds_the_same_last_entry_takes_the_next_epochs_entries() -> None:
    async with nodes(2) as (a, b):
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=5.0)
        first = a.system.spawn(counter("d", a.replicated([a.remote(b)], config), epoch=1), "d1")
        for n in (1, 2):
            assert await add(a, first, 1) == Added(n)
        await a.system.stop(first)
        # Promoted at epoch 2 over the same log: B's last entry is A's, so B takes entry 3.
        second = a.system.spawn(counter("d", a.replicated([a.remote(b)], config), epoch=2), "d2")
        assert await add(a, second, 1) == Added(3)
        assert await stored(b.journal, "d") == [(1, 1), (2, 1), (3, 2)]


async def test_a_store_that_diverged_for_an_id_of_a_shard_says_so_when_asked_its_progress() -> None:
    async with nodes(2) as (a, b):
        old = b.system.spawn(counter("e", b.journal, epoch=1), "old")
        await add(b, old, 1)
        await b.system.stop(old)
        alone = a.system.spawn(counter("e", a.journal, epoch=2), "alone")
        await add(a, alone, 10)
        await a.system.stop(alone)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=1.0)
        journal = ReplicatedJournal(a.journal, [a.remote(b)], config, a.system, shard=7)
        entity = a.system.spawn(counter("e", journal, epoch=2), "e")
        assert isinstance(await add(a, entity, 10), Refused)

        async def progress(shard: int) -> ShardProgress:
            answer: ShardProgress = await a.system.ask(
                a.remote(b), lambda r: GetShardProgress(shard, 3, r), timeout=5.0
            )
            return answer

        assert (await progress(7)).diverged is True
        assert (await progress(8)).diverged is False
