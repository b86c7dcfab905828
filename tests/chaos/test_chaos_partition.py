"""History-checked chaos with network partitions (``../shared/netlab``) instead of kills.

The kill test's cluster (three ``chaos_node.py`` processes, per-node SQLite files, 50
replicated counters, ``replicas=1, min_acks=1``) runs in netlab hosts h1..h3 and the workload in
a client process in h4 (``chaos_client.py``): only processes inside the hosts reach the lab
network. A nemesis cuts a random node off from the other two (the client still reaches it, so
a primary that is being replaced keeps getting commands), heals the partition after the
majority has downed it, and restarts it (a downed incarnation cannot rejoin). At the end the
client reads every counter and `casty.testing.check_history` must find no lost, duplicated
or phantom op.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chaos_support import HERE, ROOT, ChaosNode, check_run, kill_all

sys.path.insert(0, str(ROOT / "tests" / "netlab"))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from cluster_procs import NodeProcess, wait_lines
from netlab_lab import Lab, lab_up, netlab_path, why_no_netlab

pytestmark = [pytest.mark.chaos, pytest.mark.netlab, pytest.mark.slow, pytest.mark.timeout(240)]

PORT = 25520
CHAOS_SECONDS = 32.0
SEED = int(os.environ.get("CASTY_CHAOS_SEED", "11"))  # the nemesis's choices
NODE_HOSTS = ["h1", "h2", "h3"]
CLIENT_HOST = "h4"


@pytest.fixture
def lab4() -> Iterator[Lab]:
    reason = why_no_netlab()
    if reason is not None:
        pytest.skip(reason)
    path = netlab_path()
    assert path is not None
    with lab_up(path, 4) as lab:
        yield lab


class ClientProcess(NodeProcess):
    """``chaos_client.py`` inside a host; its stdout lines are collected by a reader task."""

    def __init__(self, lab: Lab, contacts: list[str], tmp: Path) -> None:
        super().__init__(
            ["--host", lab.ip[CLIENT_HOST], *(a for c in contacts for a in ("--contact", c)),
             "--history", str(tmp / "history.jsonl"), "--final", str(tmp / "final.json")],
            tmp / "client.stderr",
            prefix=lab.exec_prefix(CLIENT_HOST),
            program=[str(HERE / "chaos_client.py")],
        )  # fmt: skip

    def said(self, kind: str) -> bool:
        return bool(self.of(kind))

    def all_up(self, count: int) -> bool:
        """The client's latest snapshot shows ``count`` members, all up and reachable."""
        members = self.of("members")
        return bool(members) and members[-1]["up"] == count and members[-1]["unreachable"] == 0

    def settled(self) -> bool:
        return self.all_up(3)

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> None:
        await wait_lines([self], lambda _: condition(), timeout)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def test_no_acknowledged_increment_is_lost_duplicated_or_phantom_under_partitions(
    lab4: Lab, tmp_path: Path
) -> None:
    seeds = [f"{lab4.ip[h]}:{PORT}" for h in NODE_HOSTS]
    nodes = {
        h: ChaosNode(i, lab4.ip[h], PORT, seeds, tmp_path / f"node-{i}.db", tmp_path,
                     prefix=lab4.exec_prefix(h))
        for i, h in enumerate(NODE_HOSTS)
    }  # fmt: skip
    client = ClientProcess(lab4, seeds, tmp_path)
    rng = random.Random(SEED)
    partitions: list[str] = []
    try:
        await asyncio.gather(*(n.start(timeout=60.0) for n in nodes.values()))
        await client.start()
        await client.wait_for(lambda: client.said("running") and client.settled(), 30.0)
        end = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(2.0, 4.0))  # pacing between faults
            victim = rng.choice(NODE_HOSTS)
            others = ",".join(h for h in NODE_HOSTS if h != victim)
            await asyncio.to_thread(lab4.run, "partition", victim, others)
            partitions.append(victim)
            # The partition lasts until the majority downed the victim (about 4 s with the
            # defaults), the client sending to it meanwhile.
            await client.wait_for(lambda: client.all_up(2), 40.0)
            await asyncio.to_thread(lab4.run, "heal")
            await nodes[victim].kill()  # downed by now; a downed incarnation cannot rejoin
            await nodes[victim].start(timeout=60.0)
            await client.wait_for(client.settled, 40.0)
        client.command("stop")
        await client.wait_for(lambda: client.said("stopped"), 30.0)
        await client.wait_for(client.settled, 40.0)
        client.command("read")
        await client.wait_for(lambda: client.said("done"), 60.0)
        final = json.loads((tmp_path / "final.json").read_text())
        check_run(tmp_path / "history.jsonl", final, partitions, at_least=2)
    finally:
        with contextlib.suppress(AssertionError):
            lab4.run("heal")
        await client.kill()
        await kill_all(list(nodes.values()))
