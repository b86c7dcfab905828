"""A primary's writes reach its replicas' journals before the reply (real TCP on loopback)."""

from __future__ import annotations

import pytest
from replication_support import WAIT, Added, Refused, add, connect, counter, nodes, stored, total

from casty.errors import ConfigurationError, ReplicationTimeout
from casty.replication import ReplicationConfig
from casty.testing import FakeNetwork, wait_until

pytestmark = pytest.mark.slow


async def test_reply_comes_after_min_acks_replicas_stored_the_events() -> None:
    async with nodes(3) as (a, b, c):
        config = ReplicationConfig(replicas=2, min_acks=2, ack_timeout=5.0)
        journal = a.replicated([a.remote(b), a.remote(c)], config)
        entity = a.system.spawn(counter("c1", journal, epoch=1), "c1")
        for i in range(1, 6):
            assert await add(a, entity, 10) == Added(10 * i)
            # The reply was released only once both replicas held the event.
            assert await stored(b.journal, "c1") == [(n, 1) for n in range(1, i + 1)]
            assert await stored(c.journal, "c1") == [(n, 1) for n in range(1, i + 1)]
        assert await stored(a.journal, "c1") == [(n, 1) for n in range(1, 6)]


async def test_ack_timeout_fails_the_command_when_the_replica_is_partitioned() -> None:
    network = FakeNetwork()
    async with nodes(2, network) as (a, b):
        await connect(a, b)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=1.0)
        entity = a.system.spawn(counter("c2", a.replicated([a.remote(b)], config), epoch=1), "c2")
        assert await add(a, entity, 1) == Added(1)
        network.partition("node-0", "node-1")
        answer = await add(a, entity, 5)
        assert isinstance(answer, Refused)
        assert isinstance(answer.cause, ReplicationTimeout)
        assert "0 of min_acks=1" in str(answer.cause)
        # The replica never got the unconfirmed event.
        assert await stored(b.journal, "c2") == [(1, 1)]


async def test_min_acks_below_replicas_does_not_wait_for_a_partitioned_replica() -> None:
    network = FakeNetwork()
    async with nodes(3, network) as (a, b, c):
        network.partition("node-0", "node-2")
        config = ReplicationConfig(replicas=2, min_acks=1, ack_timeout=5.0)
        journal = a.replicated([a.remote(b), a.remote(c)], config)
        entity = a.system.spawn(counter("c3", journal, epoch=1), "c3")
        assert await add(a, entity, 2) == Added(2)
        assert await add(a, entity, 3) == Added(5)
        assert await stored(b.journal, "c3") == [(1, 1), (2, 1)]
        assert await stored(c.journal, "c3") == []


async def test_a_replica_that_fell_behind_catches_up_from_the_primary() -> None:
    async with nodes(2) as (a, b):
        # Three events written while the entity had no replica at all.
        alone = a.system.spawn(counter("c4", a.journal, epoch=1), "alone")
        for _ in range(3):
            await add(a, alone, 1)
        await a.system.stop(alone)
        config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=5.0)
        entity = a.system.spawn(counter("c4", a.replicated([a.remote(b)], config), epoch=1), "c4")
        assert await total(a, entity) == 3
        assert await add(a, entity, 1) == Added(4)
        # The replica got the missing 1..3 from the primary's journal, then the new event.
        assert await stored(b.journal, "c4") == [(1, 1), (2, 1), (3, 1), (4, 1)]


async def test_too_few_replica_stores_for_min_acks_is_a_configuration_error() -> None:
    async with nodes(1) as (a,):
        with pytest.raises(ConfigurationError, match="min_acks=1"):
            a.replicated([], ReplicationConfig(replicas=1, min_acks=1))


async def test_min_acks_zero_replies_without_waiting_and_still_pushes() -> None:
    network = FakeNetwork()
    async with nodes(3, network) as (a, b, c):
        network.partition("node-0", "node-2")
        config = ReplicationConfig(replicas=2, min_acks=0, ack_timeout=1.0)
        journal = a.replicated([a.remote(b), a.remote(c)], config)
        entity = a.system.spawn(counter("z", journal, epoch=1), "z")
        assert await add(a, entity, 4) == Added(4)  # C is unreachable: nobody waited for it

        async def b_has_it() -> bool:
            return await b.journal.highest_sequence_nr("z") == 1

        await wait_until(b_has_it, WAIT)
        assert await stored(c.journal, "z") == []
