"""History-checked chaos: a nemesis SIGKILLs and restarts node processes under load.

Three node processes (``chaos_node.py``: per-node SQLite files, real TCP on loopback) host 50
replicated event-sourced counters (``replicas=1, min_acks=1``). Client tasks in this process
send increments through a `ClusterClient`, each with a unique op id, and record every outcome;
a nemesis SIGKILLs a random node every few seconds and restarts it over the same file and port.
At the end every counter is read and `casty.testing.check_history` must find no lost
(acknowledged but absent), duplicated or phantom (refused or never sent, but present) op.

Two paces: `SPACED` (each kill after the previous one was dealt with) and `OVERLAPPING`
(kills within the failover window: a shard's copies are often all restarted before the
first kill was dealt with, which the durable `ShardLedger` is for). A failed run keeps
``history.jsonl``, ``final.json``, the nodes' SQLite files and their stderr (sharding's
decisions at INFO) in its ``tmp_path``; ``CASTY_CHAOS_SEED`` replays other random choices.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from chaos_support import ROOT, ChaosNode, check_run, kill_all, read_all, run_workload

from casty.client import ClusterClient
from casty.cluster.member import MemberStatus
from casty.testing import HistoryRecorder, wait_until

sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from cluster_harness import free_ports

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(240)]

SEED = int(os.environ.get("CASTY_CHAOS_SEED", "7"))  # the nemesis's choices


def settled(client: ClusterClient, count: int) -> bool:
    """The client's latest snapshot shows ``count`` members, all up and reachable."""
    snapshot = client.topology
    return (
        snapshot is not None
        and len(snapshot.members) == count
        and all(m.status is MemberStatus.UP for m in snapshot.members)
        and not snapshot.unreachable
    )


@dataclass(frozen=True)
class Pace:
    """The nemesis's timing, in seconds: ``(low, high)`` ranges drawn uniformly."""

    between: tuple[float, float]  # from the cluster being whole again to the next kill
    dead: tuple[float, float]  # from a kill to the restart
    seconds: float  # the length of the run


# Each kill waits for the previous fault to be over (shards promoted, replicas restored).
SPACED = Pace(between=(2.0, 4.0), dead=(0.5, 2.0), seconds=32.0)
# Kills follow each other within the failover window: a shard's primary and its replica are
# often both killed (and restarted) before the first kill was dealt with.
OVERLAPPING = Pace(between=(0.3, 1.0), dead=(0.0, 0.5), seconds=60.0)


async def test_no_acknowledged_increment_is_lost_duplicated_or_phantom_under_sigkills(
    tmp_path: Path,
) -> None:
    await chaos_run(tmp_path, SPACED)


async def test_no_acknowledged_increment_is_lost_when_kills_overlap(tmp_path: Path) -> None:
    await chaos_run(tmp_path, OVERLAPPING)


async def chaos_run(tmp_path: Path, pace: Pace) -> None:
    ports = free_ports(3)
    seeds = [f"127.0.0.1:{p}" for p in ports]
    nodes = [
        ChaosNode(i, "127.0.0.1", port, seeds, tmp_path / f"node-{i}.db", tmp_path)
        for i, port in enumerate(ports)
    ]
    history_path = tmp_path / "history.jsonl"
    kills: list[tuple[int, float]] = []
    rng = random.Random(SEED)
    try:
        await asyncio.gather(*(n.start() for n in nodes))
        async with ClusterClient(contact_points=seeds, system_name="chaos") as client:
            await wait_until(lambda: settled(client, 3), 20.0)
            stop = asyncio.Event()

            async def nemesis() -> None:
                while not stop.is_set():
                    await asyncio.sleep(rng.uniform(*pace.between))  # pacing between faults
                    if stop.is_set():
                        return
                    victim = rng.choice(nodes)
                    await victim.kill()
                    kills.append((victim.index, time.time()))
                    await asyncio.sleep(rng.uniform(*pace.dead))  # how long it stays dead
                    await victim.start(timeout=40.0)
                    # The next fault only once the cluster is whole again (else a second
                    # kill could leave no majority, which is another test).
                    await wait_until(lambda: settled(client, 3), 30.0)

            with HistoryRecorder(history_path) as recorder:
                async with asyncio.TaskGroup() as group:
                    group.create_task(run_workload(client, recorder, stop, seed=SEED))
                    faults = group.create_task(nemesis())
                    await asyncio.sleep(pace.seconds)  # the length of the run
                    stop.set()
                    await faults
            await wait_until(lambda: settled(client, 3), 30.0)
            final = await read_all(client)
        (tmp_path / "final.json").write_text(json.dumps(final))  # kept to explain a failure
        check_run(history_path, final, kills, at_least=3)
    finally:
        await kill_all(nodes)
