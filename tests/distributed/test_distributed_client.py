"""The `Distributed` facade from a `ClusterClient` on real TCP: the same API as a member's,
its requests routed straight to the owning members; a killed client process loses its lock."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path

import pytest
from distributed_harness import started, stop_all

from casty.client import ClusterClient
from casty.distributed import Distributed
from casty.errors import AcquireTimeout, ConfigurationError, LeaseExpired, ResourceClosed
from casty.journals import InMemoryJournal

pytestmark = pytest.mark.slow


async def test_every_primitive_works_from_a_client() -> None:
    nodes = await started(3)
    try:
        at = nodes[1].system.node_address
        async with ClusterClient(
            cluster_host=at.host, cluster_port=at.port, system_name=nodes[1].system.name
        ) as client:
            d = client.distributed()
            assert client.distributed() is d
            member = nodes[2].system.distributed()

            # Locks: the client and members exclude each other; tokens increase across all.
            tokens: list[int] = []
            inside: list[str] = []
            overlaps = 0

            async def hold(lock_owner: str, facade: Distributed) -> None:
                nonlocal overlaps
                lock = facade.lock("shared")
                for _ in range(3):
                    async with lock:
                        overlaps += bool(inside)
                        inside.append(lock_owner)
                        assert lock.token is not None
                        tokens.append(lock.token)
                        await asyncio.sleep(0.002)  # hold it across real suspensions
                        inside.remove(lock_owner)

            await asyncio.wait_for(
                asyncio.gather(hold("client", d), hold("member", member), hold("c2", d)), 60.0
            )
            assert overlaps == 0 and len(tokens) == 9
            assert all(a < b for a, b in itertools.pairwise(tokens))

            async with d.semaphore("pool", 2).permit() as permit:
                assert permit.held
            # A barrier with two members and the client as parties.
            generations = await asyncio.gather(
                d.barrier("meet", 3, timeout=20.0),
                nodes[0].system.barrier("meet", 3, timeout=20.0),
                member.barrier("meet", 3, timeout=20.0),
            )
            assert generations == [0, 0, 0]

            assert await d.counter("visits").add(5) == 5
            assert await member.counter("visits").increment() == 6
            assert await d.map("m").put("a", 1) is None
            assert await member.map("m").get("a") == 1
            assert await d.set("s").add("x") is True
            assert await member.set("s").contains("x")
            await d.queue("q").put({"job": 1})
            reservation = await member.queue("q").reserve()
            assert reservation is not None and reservation.item == {"job": 1}
            await d.queue("q").ack(reservation)
            with pytest.raises(LeaseExpired):
                await d.queue("q").ack(reservation)

            stats = client.statistics()
            assert stats.direct > 0 and stats.dead_letters == 0
            with pytest.raises(ConfigurationError):
                Distributed(client, journal=InMemoryJournal())
        with pytest.raises(ResourceClosed):
            client.distributed()
    finally:
        await stop_all(nodes, leave=False)


HOLDER = Path(__file__).resolve().parent / "holder_proc.py"


async def test_a_killed_client_process_loses_its_lock_when_the_lease_runs_out() -> None:
    nodes = await started(3)
    at = nodes[0].system.node_address
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HOLDER),
        at.host,
        str(at.port),
        nodes[0].system.name,
        "held-by-a-client",
        "1.0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30.0)
        dead_token = json.loads(line)["token"]
        rival = nodes[1].system.distributed().lock("held-by-a-client")
        with pytest.raises(AcquireTimeout):
            await rival.acquire(timeout=3.0)  # three ttls: the client's renewals keep it
        process.kill()  # SIGKILL: no release, no goodbye
        await process.wait()
        token = await rival.acquire(timeout=30.0)
        assert token > dead_token
        await rival.release()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await stop_all(nodes, leave=False)
