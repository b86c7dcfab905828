"""Leased semaphores on real TCP, three nodes in one process: never more than N holders."""

from __future__ import annotations

import asyncio

import pytest
from distributed_harness import started, stop_all

from casty.errors import AcquireTimeout, ConfigurationError, LeaseExpired

pytestmark = pytest.mark.slow

PERMITS = 3


async def test_twenty_tasks_on_three_nodes_never_exceed_the_permits() -> None:
    nodes = await started(3)
    try:
        holders: set[int] = set()
        most = 0
        tokens: list[int] = []

        async def worker(i: int) -> None:
            nonlocal most
            semaphore = nodes[i % 3].system.distributed().semaphore("pool", PERMITS)
            for _ in range(3):
                async with semaphore.permit(timeout=60.0) as permit:
                    assert permit.token is not None and permit.held
                    holders.add(i)
                    most = max(most, len(holders))
                    tokens.append(permit.token)
                    await asyncio.sleep(0.005)  # hold it across real suspensions
                    holders.discard(i)

        await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(20))), timeout=90.0)
        assert most == PERMITS  # the permits were used, and never exceeded
        assert len(tokens) == 60 and len(set(tokens)) == 60
    finally:
        await stop_all(nodes, leave=False)


async def test_permits_are_leased_and_fenced_like_locks() -> None:
    nodes = await started(3)
    try:
        sem = nodes[0].system.distributed().semaphore("leased", 2, ttl=0.3, auto_renew=False)
        first = await sem.acquire()
        second = await sem.acquire()
        busy = nodes[1].system.distributed().semaphore("leased", 2)
        # Both permits are held but never renewed: they run out and the waiter gets one.
        third = await busy.acquire(timeout=10.0)
        assert third.token is not None and first.token is not None and second.token is not None
        assert third.token > max(first.token, second.token)
        with pytest.raises(LeaseExpired):
            await first.release()  # a late release is refused
        with pytest.raises(ConfigurationError, match="2 permits"):
            await nodes[2].system.distributed().semaphore("leased", 5).acquire(timeout=1.0)
        fourth = await busy.acquire(timeout=10.0)  # the other expired permit
        with pytest.raises(AcquireTimeout):
            await busy.acquire(timeout=0.5)  # both held and renewed now
        await third.release()
        await fourth.release()
        # Once nobody holds or waits, the name may be used with another count.
        five = nodes[2].system.distributed().semaphore("leased", 5)
        permits = [await five.acquire(timeout=5.0) for _ in range(5)]
        for permit in permits:
            await permit.release()
        with pytest.raises(ConfigurationError):
            nodes[0].system.distributed().semaphore("bad", 0)
    finally:
        await stop_all(nodes, leave=False)
