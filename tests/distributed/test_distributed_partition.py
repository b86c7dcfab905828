"""A lock holder cut off by a partition: fencing tokens keep two holders from both writing.

Runs over the in-process `MemoryTransport` (`FakeNetwork`), which can cut links; the cluster,
sharding and lock wiring are the real ones. A fenced store (the resource the lock protects)
accepts a write only with a token at least as large as every token it saw; the checker
verifies that grants come with strictly increasing tokens and that the store never accepted a
stale write after a newer holder's.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import pytest
from distributed_harness import Node, host_of, start_cluster, stop_all, wait_until

from casty.distributed import LOCK_TYPE
from casty.errors import AcquireTimeout, CoordinationError
from casty.testing import FakeNetwork

pytestmark = pytest.mark.slow

TTL = 1.0


@dataclass
class FencedStore:
    """The protected resource: refuses a write whose token is older than the newest seen."""

    highest: int = 0
    accepted: list[tuple[str, int]] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)

    def write(self, who: str, token: int) -> bool:
        if token < self.highest:
            self.refused.append((who, token))
            return False
        self.highest = token
        self.accepted.append((who, token))
        return True


async def placed(nodes: list[Node], where: Node) -> str:
    """A lock name whose entity runs on ``where``."""
    facade = nodes[0].system.distributed()
    for i in range(200):
        name = f"fenced-{i}"
        lock = facade.lock(name)
        await lock.acquire(timeout=10.0)
        await lock.release()
        if host_of(nodes, LOCK_TYPE, name) is where:
            return name
    raise AssertionError(f"no lock name placed on {where.system.address}")


@pytest.mark.parametrize(
    "entity_side", ["majority", "minority"], ids=["entity-on-majority", "entity-with-holder"]
)
async def test_a_cut_off_holder_never_writes_after_the_next_grant(entity_side: str) -> None:
    network = FakeNetwork(f"lock-partition-{entity_side}")
    nodes = await start_cluster(3, network)
    try:
        for n in nodes:
            n.system.distributed()
        minority, contender_node = nodes[2], nodes[1]
        name = await placed(nodes, minority if entity_side == "minority" else nodes[1])
        loop = asyncio.get_running_loop()
        store = FencedStore()
        grants: list[tuple[float, str, int]] = []

        old = minority.system.distributed().lock(name, ttl=TTL)
        grants.append((loop.time(), "old", await old.acquire(timeout=10.0)))
        stale_writes_tried = 0

        async def old_writer() -> None:
            # Writes while it believes it holds the lock (as a paused or cut-off process would).
            nonlocal stale_writes_tried
            while old.held:
                assert old.token is not None
                if not store.write("old", old.token):
                    stale_writes_tried += 1
                await asyncio.sleep(0.02)  # pacing of the old holder's writes

        writer = asyncio.create_task(old_writer())
        await wait_until(lambda: len(store.accepted) >= 3, 5.0)
        for other in nodes[:2]:
            network.partition(other.system.node_address.host, minority.system.node_address.host)

        new = contender_node.system.distributed().lock(name, ttl=TTL)
        deadline = loop.time() + 60.0
        while True:
            try:
                token = await new.acquire(timeout=2.0)
                break
            except (AcquireTimeout, CoordinationError):
                assert loop.time() < deadline, "the majority never got the lock"
        granted_at = loop.time()
        grants.append((granted_at, "new", token))
        for _ in range(5):
            assert store.write("new", token)
            await asyncio.sleep(0.02)  # pacing of the new holder's writes
        await asyncio.wait_for(writer, 10.0)  # the old holder stops believing within a ttl

        tokens = [t for _, _, t in sorted(grants)]
        assert all(a < b for a, b in itertools.pairwise(tokens)), grants
        accepted = [t for _, t in store.accepted]
        assert all(a <= b for a, b in itertools.pairwise(accepted))
        first_new = accepted.index(token)
        assert all(who == "new" for who, _ in store.accepted[first_new:])
        assert not old.held and new.held
        if entity_side == "majority":
            # The entity measured the lease: the cut-off holder's belief (ttl after its last
            # successful renewal was sent) ended before the lock was granted again.
            assert old._valid_until <= granted_at
            assert stale_writes_tried == 0
        else:
            # The entity moved with the minority's downing: a new incarnation granted, and
            # only its larger token protects the store from the old holder.
            assert minority.system.cluster.is_downed
            assert host_of(nodes, LOCK_TYPE, name) is not minority
        await new.release()
    finally:
        await stop_all(nodes, leave=False)
