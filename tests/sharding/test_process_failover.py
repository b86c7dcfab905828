"""A node process is SIGKILLed while a producer keeps sending to event-sourced entities.

Two nodes run in this process (the oldest, which runs the coordinator and the producer, and
one more); the victim runs in a child process (``sharding_node.py``). All three journal into
**one SQLite file**: the victim's entities must replay on a survivor, and a per-node file dies
with its node (keeping the events on other nodes without a shared store is the replication
layer's job, not sharding's). SQLite serialises the three processes' writers with its file
lock (``busy_timeout``).

Checked: every message sent after this node detected the failure is processed exactly once
and in order; every acknowledged event survives, on whichever node its entity runs now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from sharding_domain import Add, Added, GetLog, Log, log_entity
from sharding_harness import coordinator_state, free_ports, node, stop_all, wait_until

from casty import ActorContext, Behavior, Behaviors, EventStreamSubscribe, ShardEnvelope
from casty.cluster import UnreachableMember
from casty.journals import as_journal
from casty.sharding import wait_registered

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ENTITIES = [f"log-{i}" for i in range(24)]


async def start_victim(port: int, seed: str, journal_url: str, stderr: Path) -> Any:
    env = dict(os.environ)
    with stderr.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "sharding_node.py"),
            "--port",
            str(port),
            "--seed",
            seed,
            "--journal",
            journal_url,
            "--node-id",
            "victim",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=env,
        )
    assert process.stdout is not None
    async with asyncio.timeout(20.0):
        line = await process.stdout.readline()
    assert line and json.loads(line)["kind"] == "up", f"the victim did not start; see {stderr}"
    return process


async def test_a_killed_nodes_entities_recover_and_nothing_sent_after_detection_is_lost(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    journal = as_journal(url)
    acked: dict[str, list[int]] = {e: [] for e in ENTITIES}
    detected: list[int] = []
    rounds = 0

    def on_ack(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if isinstance(msg, Added):
            acked[msg.entity_id].append(msg.n)
        return Behaviors.same()

    def on_unreachable(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if not detected:
            detected.append(rounds)  # rounds after this one were all sent after detection
        return Behaviors.same()

    oldest_port, victim_port, other_port = free_ports(3)
    oldest = node(node_id="oldest", port=oldest_port)
    other = node(node_id="other", port=other_port, seed_nodes=[f"127.0.0.1:{oldest_port}"])
    victim = None
    async with journal:
        try:
            await oldest.system.__aenter__()
            victim = await start_victim(
                victim_port, f"127.0.0.1:{oldest_port}", url, tmp_path / "victim.err"
            )
            await other.system.__aenter__()
            await wait_until(lambda: len(oldest.system.cluster.up_members) == 3, 15.0)
            survivors = [oldest, other]
            regions = [
                n.system.spawn(Behaviors.sharded(log_entity(journal), num_shards=32), "logs")
                for n in survivors
            ]
            for n, region in zip(survivors, regions, strict=True):
                await wait_registered(n.system, region)

            async def three_regions() -> bool:
                state = await coordinator_state(oldest.system, "logs")
                return state is not None and len(state.regions) == 3

            await wait_until(three_regions, 15.0)
            system = oldest.system
            region = regions[0]
            acks = system.spawn(Behaviors.receive(on_ack), "acks")
            watcher = system.spawn(Behaviors.receive(on_unreachable), "unreachable")
            system.event_stream.tell(EventStreamSubscribe(UnreachableMember, watcher))
            stop = asyncio.Event()

            async def produce() -> None:
                nonlocal rounds
                while not stop.is_set():
                    rounds += 1
                    for entity_id in ENTITIES:
                        region.tell(ShardEnvelope(entity_id, Add(rounds, acks)))
                    await asyncio.sleep(0.01)  # pacing of the load, not synchronisation

            async def where(entity_id: str) -> Log:
                log: Log = await system.ask(
                    region, lambda r: ShardEnvelope(entity_id, GetLog(r)), timeout=10.0
                )
                return log

            async with asyncio.TaskGroup() as group:
                group.create_task(produce())
                await wait_until(lambda: all(len(a) >= 10 for a in acked.values()), 15.0)
                victim_root = f"casty://test@127.0.0.1:{victim_port}"
                on_victim = [e for e in ENTITIES if (await where(e)).node == victim_root]
                assert on_victim, "the victim hosts some of the entities"
                victim.send_signal(signal.SIGKILL)
                await victim.wait()
                await wait_until(lambda: bool(detected), 15.0)
                after = detected[0]
                # Served again: every entity acknowledges rounds sent after the detection.
                await wait_until(
                    lambda: all(any(n > after + 5 for n in a) for a in acked.values()), 20.0
                )
                stop.set()
            last = rounds
            await wait_until(
                lambda: all(set(range(after + 1, last + 1)) <= set(a) for a in acked.values()),
                15.0,
            )
            for entity_id in ENTITIES:
                log = await where(entity_id)
                values = list(log.values)
                assert values == sorted(set(values)), f"{entity_id}: duplicates or disorder"
                assert set(acked[entity_id]) <= set(values), f"{entity_id}: lost an ack"
                assert set(range(after + 1, last + 1)) <= set(values), entity_id
                if entity_id in on_victim:
                    assert log.node != victim_root
                    # Its events acknowledged before the kill came back with it (replayed).
                    assert [n for n in acked[entity_id] if n <= after] == [
                        n for n in values if n <= after and n in acked[entity_id]
                    ]
        finally:
            if victim is not None and victim.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    victim.kill()
                await victim.wait()
            await stop_all([oldest, other], leave=False)
