"""A 5-node cluster in network namespaces, partitioned 3+2 with iptables (``netlab``).

The majority side must keep serving with three members and the minority must down itself;
never both sides serving. Every node runs in its own host (h1..h5) and reports its membership
events on stdout; the test reads them and never touches the lab network itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cluster_procs import NodeProcess, up_members, wait_lines
from netlab_lab import Lab

pytestmark = [pytest.mark.netlab, pytest.mark.slow]

PORT = 25520


async def test_three_two_partition_keeps_the_majority_serving_and_downs_the_minority(
    lab5: Lab, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    addresses = {h: f"{lab5.ip[h]}:{PORT}" for h in lab5.hosts}
    seeds = [f"--seed={addresses[h]}" for h in lab5.hosts[:3]]
    nodes = {
        h: NodeProcess(
            ["--name", "netlab", "--host", lab5.ip[h], "--port", str(PORT), "--node-id", h,
             "--quorum", "5", *seeds],
            tmp_path / f"{h}.stderr",
            prefix=lab5.exec_prefix(h),
        )
        for h in lab5.hosts
    }  # fmt: skip
    everyone = list(nodes.values())
    try:
        await asyncio.gather(*(n.start() for n in everyone))
        await wait_lines(everyone, lambda n: n.first("up") is not None, 60.0)
        await wait_lines(everyone, lambda n: up_members(n) == set(addresses.values()), 20.0)
        majority_hosts, minority_hosts = lab5.hosts[:3], lab5.hosts[3:]
        cut_at = time.time()
        lab5.run("partition", ",".join(majority_hosts), ",".join(minority_hosts))
        majority = [nodes[h] for h in majority_hosts]
        minority = [nodes[h] for h in minority_hosts]
        gone = [addresses[h] for h in minority_hosts]
        await wait_lines(
            majority, lambda n: all(n.first("MemberRemoved", node=a) for a in gone), 30.0
        )
        # A minority node publishes its own removal when it downs itself and stops serving.
        await wait_lines(
            minority,
            lambda n: (
                n.first("MemberRemoved", node=addresses[n.args[n.args.index("--node-id") + 1]])
                is not None
            ),
            30.0,
        )
        stable_after = 1.0  # DowningConfig's default: the removal margin of later layers
        removed_at = {a: min(n.of("MemberRemoved", node=a)[0]["t"] for n in majority) for a in gone}
        for h in minority_hosts:
            n, address = nodes[h], addresses[h]
            own = n.first("MemberRemoved", node=address)
            assert own is not None and own["previous"] == "down"
            assert own["t"] <= removed_at[address] + stable_after
            state = await n.state()
            assert state["downed"] is True
        for n in majority:
            state = await n.state()
            assert state["downed"] is False
            assert sorted(m[0] for m in state["members"]) == sorted(
                addresses[h] for h in majority_hosts
            )
            assert all(m[2] == "up" for m in state["members"])
        record_property(
            "partition_to_minority_removed_s", round(max(removed_at.values()) - cut_at, 3)
        )
    finally:
        lab5.run("heal")
        await asyncio.gather(*(n.stop() for n in everyone))
