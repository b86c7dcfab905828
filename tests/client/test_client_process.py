"""A ClusterClient in a separate process routes to the owning nodes with zero extra hops."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import client_support  # noqa: F401  (puts the sharding harness on the path)
import pytest
from sharding_harness import Node, start_cluster, stop_all, where_entity

from casty import Behaviors
from casty.abc import Address
from casty.sharding import wait_registered

pytestmark = pytest.mark.slow

PROC = Path(__file__).resolve().parent / "client_proc.py"


def received_from(n: Node, peer: str) -> int:
    stats = n.system.remote_statistics()
    return sum(p.messages_received for p in stats.peers if str(p.address) == peer)


async def run_client(
    contact: Address, between: Callable[[str], Awaitable[None]]
) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Run ``client_proc.py`` against ``contact``; await ``between(client address)`` once it is
    ready and before it asks; return its address, its answers and its totals."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROC),
        contact.host,
        str(contact.port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        async with asyncio.timeout(60.0):
            peer = json.loads(await process.stdout.readline())["ready"]
            await between(peer)
            process.stdin.write(b"go\n")
            await process.stdin.drain()
            lines: list[dict[str, Any]] = []
            while "direct" not in (line := json.loads(await process.stdout.readline())):
                lines.append(line)
            await between(peer)
            process.stdin.write(b"done\n")
            await process.stdin.drain()
            await process.wait()
        assert process.returncode == 0
        return peer, lines, line
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def start_three() -> list[Node]:
    nodes = await start_cluster(3)
    regions = [
        n.system.spawn(Behaviors.sharded(where_entity, num_shards=32), "where") for n in nodes
    ]
    for n, region in zip(nodes, regions, strict=True):
        await wait_registered(n.system, region)
    return nodes


async def test_a_client_process_sends_straight_to_the_owners() -> None:
    nodes = await start_three()
    try:
        contact = nodes[0].system.node_address
        counts: list[dict[Address, int]] = []

        async def count(peer: str) -> None:
            counts.append({n.system.node_address: received_from(n, peer) for n in nodes})

        _, answers, totals = await run_client(contact, count)
        before, after = counts
        assert len(answers) == 5 * 24
        assert totals["direct"] == len(answers) and totals["via_region"] == 0
        owned: dict[Address, int] = {}
        for answer in answers:
            assert answer["owner"] is not None and answer["owner"] in answer["node"]
            home = next(n.system.node_address for n in nodes if answer["node"] == n.system.address)
            owned[home] = owned.get(home, 0) + 1
        assert len(owned) == 3
        for n in nodes:
            at = n.system.node_address
            delta = after[at] - before[at]
            if at == contact:
                assert delta >= owned[at]  # plus remoting heartbeat replies, if any
            else:
                assert delta == owned[at], (at, delta, owned[at])  # one message per envelope
    finally:
        await stop_all(nodes, leave=False)


async def test_a_client_process_survives_the_death_of_its_contact_point() -> None:
    nodes = await start_three()
    victim = nodes[2]
    dead = victim.system.node_address
    try:
        killed: list[bool] = []

        async def kill_contact_once(peer: str) -> None:
            if not killed:
                killed.append(True)
                await victim.system.shutdown(leave=False)

        _, answers, totals = await run_client(dead, kill_contact_once)
        assert len(answers) == 5 * 24
        assert totals["contact"] != str(dead)
        assert all(str(dead) not in answer["node"] for answer in answers)
    finally:
        await stop_all(nodes[:2], leave=False)
