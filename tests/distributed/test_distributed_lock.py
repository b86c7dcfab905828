"""Leased locks on real TCP, three nodes in one process: exclusion, fencing, expiry, renewal."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from distributed_harness import host_of, started, stop_all

from casty.distributed import LOCK_TYPE
from casty.errors import AcquireTimeout, ConfigurationError, CoordinationError, LeaseExpired

pytestmark = pytest.mark.slow


async def test_twenty_tasks_on_three_nodes_never_overlap_and_tokens_increase() -> None:
    nodes = await started(3)
    try:
        holder: list[int] = []
        grants: list[int] = []
        overlaps: list[tuple[int, int]] = []

        async def worker(i: int) -> None:
            lock = nodes[i % 3].system.distributed().lock("mutex")
            for _ in range(2):
                async with lock:
                    assert lock.token is not None
                    if holder:
                        overlaps.append((holder[0], i))
                    holder.append(i)
                    grants.append(lock.token)
                    for _ in range(3):
                        await asyncio.sleep(0)  # give the others a chance to barge in
                    holder.remove(i)

        await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(20))), timeout=60.0)
        assert overlaps == []
        assert len(grants) == 40
        assert all(a < b for a, b in itertools.pairwise(grants))
    finally:
        await stop_all(nodes, leave=False)


async def test_a_dead_holder_loses_the_lock_when_its_lease_runs_out() -> None:
    nodes = await started(3)
    try:
        name = "held-by-the-dead"
        first = nodes[0].system.distributed().lock(name, ttl=1.0)
        await first.acquire()  # places the entity; released below to pick the holder
        host = host_of(nodes, LOCK_TYPE, name)
        await first.release()
        doomed = next(n for n in nodes[1:] if n is not host)
        heir = next(n for n in nodes[1:] if n is not doomed)
        held = doomed.system.distributed().lock(name, ttl=1.0)
        dead_token = await held.acquire()
        waiter = asyncio.create_task(heir.system.distributed().lock(name).acquire(timeout=30.0))
        assert not waiter.done()
        await doomed.system.shutdown(leave=False)
        token = await asyncio.wait_for(waiter, timeout=30.0)
        assert token > dead_token
    finally:
        await stop_all(nodes, leave=False)


async def test_a_late_release_is_refused_and_renewal_keeps_the_lease() -> None:
    nodes = await started(3)
    try:
        paused = nodes[0].system.distributed().lock("late", ttl=0.3, auto_renew=False)
        old = await paused.acquire()
        other = nodes[1].system.distributed().lock("late")
        new = await other.acquire(timeout=10.0)  # granted once the unrenewed lease ran out
        assert new > old
        with pytest.raises(LeaseExpired):
            await paused.release()
        with pytest.raises(CoordinationError):
            await paused.release()  # no longer held by this object at all
        await other.release()

        renewed = nodes[2].system.distributed().lock("kept", ttl=0.3)
        kept = await renewed.acquire()
        rival = nodes[0].system.distributed().lock("kept")
        with pytest.raises(AcquireTimeout):
            await rival.acquire(timeout=1.5)  # five ttls: only the renewals keep it
        assert renewed.held
        await renewed.release()
        assert await rival.acquire(timeout=5.0) > kept
        await rival.release()
    finally:
        await stop_all(nodes, leave=False)


async def test_bad_arguments_and_misuse_raise_clear_errors() -> None:
    nodes = await started(1)
    try:
        facade = nodes[0].system.distributed()
        assert nodes[0].system.distributed() is facade  # one facade per system
        for bad in ({"name": ""}, {"name": "x", "ttl": 0}, {"name": "x", "ttl": -1.0}):
            with pytest.raises(ConfigurationError):
                facade.lock(**bad)
        lock = facade.lock("solo")
        with pytest.raises(ConfigurationError):
            await lock.acquire(timeout=-1)
        with pytest.raises(CoordinationError):
            await lock.release()  # never acquired
        with pytest.raises(CoordinationError):
            await lock.renew()
        token = await lock.acquire(timeout=0)  # free: granted without waiting
        with pytest.raises(CoordinationError):
            await lock.acquire()  # already held by this object
        with pytest.raises(AcquireTimeout):
            await facade.lock("solo").acquire(timeout=0)
        await lock.release()
        assert lock.token is None and not lock.held
        assert await lock.acquire(timeout=0) > token
        await lock.release()
    finally:
        await stop_all(nodes, leave=False)
