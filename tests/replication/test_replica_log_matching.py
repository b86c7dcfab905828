"""A replica store appends a new primary's entries only after an entry both logs hold.

Found by the chaos test (``tests/chaos/test_chaos_kill.py`` with a faster nemesis): a node that
was primary at epoch 1 wrote entries its replica never confirmed, was killed, and came back as
the replica of the promoted primary (epoch 2), whose log had other entries at those numbers.
The store appended the new primary's next entry after its own stale ones and acknowledged it;
promoted later, it served a history without the acknowledged epoch-2 entries. Then it refused
such pushes for good, which left the id without a replica and its copy never repaired (the
chaos test lost acknowledged writes when such copies piled up). Now, as in Raft, it finds the
last entry both logs hold and replaces its entries after it with the primary's (see also
``test_divergence.py``).
"""

from __future__ import annotations

import pytest
from replication_support import Added, add, counter, nodes, stored, total, write_alone

from casty.replication import ReplicationConfig

pytestmark = pytest.mark.slow


async def test_a_store_replaces_an_older_epochs_entries_after_the_last_shared_one() -> None:
    async with nodes(2) as (a, b):
        # Both hold 1..2 of epoch 1. B, primary at epoch 1, then wrote 3 and never got it
        # confirmed; A, promoted at epoch 2, wrote another 3.
        for node in (a, b):
            assert await write_alone(node, "c", 1, [1, 1]) == [Added(1), Added(2)]
        assert await write_alone(b, "c", 1, [1]) == [Added(3)]
        assert await write_alone(a, "c", 2, [10]) == [Added(12)]
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=5.0)
        entity = a.system.spawn(counter("c", a.replicated([a.remote(b)], config), epoch=2), "c")
        assert await add(a, entity, 10) == Added(22)
        # B stepped back to entry 2 (held by both) and took A's entries after it.
        assert await stored(b.journal, "c") == [(1, 1), (2, 1), (3, 2), (4, 2)]
        assert await total(b, b.system.spawn(counter("c", b.journal, epoch=3), "c")) == 22


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
