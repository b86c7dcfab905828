"""`system.metrics()`, the Prometheus endpoint, and the node id in log records."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

from casty import (
    ActorContext,
    ActorSystem,
    Behavior,
    Behaviors,
    ClusteredActorSystem,
    InMemoryJournal,
)
from casty.actors.events import DeadLetterReason
from casty.sharding import ShardEnvelope
from casty.testing import wait_until


@dataclass(frozen=True)
class Add:
    amount: int
    reply_to: Any


def counter(journal: InMemoryJournal) -> Any:
    def entity(entity_id: str) -> Behavior[Any]:
        def on_command(ctx: ActorContext[Any], state: int, command: Add) -> Behavior[Any]:
            return Behaviors.persisted(
                command.amount, then=lambda new_state: command.reply_to.tell(new_state)
            )

        return Behaviors.event_sourced(
            entity_id=entity_id,
            journal=journal,
            initial_state=0,
            on_event=lambda state, amount: state + amount,
            on_command=on_command,
        )

    return entity


async def test_local_counters() -> None:
    async with ActorSystem("metrics") as system:
        seen: list[int] = []

        def receive(ctx: ActorContext[int], message: int) -> Behavior[int]:
            seen.append(message)
            return Behaviors.same() if message >= 0 else Behaviors.unhandled()

        ref = system.spawn(Behaviors.receive(receive), "sink")
        for i in range(100):  # all queued before the actor first runs
            ref.tell(i)
        ref.tell(-1)
        await wait_until(lambda: len(seen) == 101)
        await system.stop(ref)
        await wait_until(lambda: system.metrics().dead_letters.get("unhandled") == 1)
        ref.tell(7)
        metrics = system.metrics()
        assert metrics.messages_processed >= 101
        assert metrics.mailbox_high_water >= 101
        assert metrics.dead_letters[DeadLetterReason.UNHANDLED] == 1
        assert metrics.dead_letters[DeadLetterReason.RECIPIENT_STOPPED] == 1
        assert metrics.members == {} and metrics.peers == {} and metrics.regions == {}


async def test_cluster_metrics_and_the_prometheus_endpoint() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        metrics_port = sock.getsockname()[1]
    journal = InMemoryJournal()
    first = ClusteredActorSystem(
        config={"cluster": {"name": "m", "node_id": "first"}, "metrics": {"prometheus_port": 0}}
    )
    async with first:
        seed = str(first.node_address)
        second = ClusteredActorSystem(
            config={
                "cluster": {"name": "m", "node_id": "second", "seeds": [seed]},
                "metrics": {"prometheus_port": metrics_port},
            }
        )
        async with second:
            await wait_until(lambda: len(first.cluster.up_members) == 2, timeout=10.0)
            regions = [
                system.spawn(Behaviors.sharded(counter(journal), num_shards=8), "counters")
                for system in (first, second)
            ]
            for i in range(20):
                total = await second.ask(
                    regions[1], lambda reply_to, i=i: ShardEnvelope(f"c{i}", Add(1, reply_to))
                )
                assert total == 1
            for system in (first, second):
                metrics = system.metrics()
                assert metrics.members == {"up": 2}
                peer = metrics.peers[str((second if system is first else first).node_address)]
                assert peer.frames_sent > 0 and peer.bytes_sent > peer.frames_sent
                assert peer.frames_received > 0 and peer.bytes_received > 0
            both = [first.metrics().regions["counters"], second.metrics().regions["counters"]]
            assert sum(r.shards for r in both) >= 1
            assert sum(r.entities for r in both) == 20
            writes = sum(s.metrics().journal_write_latency.count for s in (first, second))
            assert writes == 20

            url = f"http://127.0.0.1:{metrics_port}/metrics"
            body = await asyncio.to_thread(
                lambda: urllib.request.urlopen(url, timeout=5).read().decode()
            )
            own = second.metrics()
            assert 'casty_members{node="second",status="up"} 2.0' in body
            assert (
                f'casty_region_entities{{node="second",type="counters"}} '
                f"{float(own.regions['counters'].entities)}" in body
            )
            count = own.journal_write_latency.count
            assert f'casty_journal_write_seconds_count{{node="second"}} {float(count)}' in body
            assert 'casty_peer_bytes_sent_total{node="second",peer="' in body
            assert "casty_messages_processed_total" in body
        with pytest.raises(OSError):  # the endpoint stopped with its node
            await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _failing(ctx: ActorContext[str], message: str) -> Behavior[str]:
    raise RuntimeError(f"failure for the log ({message})")


async def test_every_casty_record_names_its_node() -> None:
    handler = _Records()
    casty_log = logging.getLogger("casty")
    casty_log.addHandler(handler)
    level = casty_log.level
    casty_log.setLevel(logging.DEBUG)
    try:
        async with ClusteredActorSystem(config={"cluster": {"node_id": "solo"}}) as solo:
            solo.spawn(Behaviors.receive(_failing), "fails").tell("solo")
            await wait_until(lambda: any("solo)" in r.getMessage() for r in handler.records))
        assert handler.records
        assert {getattr(r, "node_id", None) for r in handler.records} == {"solo"}

        # Two nodes in one process: what their actors log names each node.
        handler.records.clear()
        async with (
            ClusteredActorSystem(config={"cluster": {"node_id": "a"}}) as a,
            ClusteredActorSystem(config={"cluster": {"node_id": "b"}}) as b,
        ):
            for system, text in ((a, "from-a"), (b, "from-b")):
                system.spawn(Behaviors.receive(_failing), "fails").tell(text)
            await wait_until(lambda: sum("from-" in r.getMessage() for r in handler.records) >= 2)
        failures = {
            match.group(1): r.node_id  # type: ignore[attr-defined]
            for r in handler.records
            if (match := re.search(r"failure for the log \((from-\w)\)", r.getMessage()))
        }
        assert failures == {"from-a": "a", "from-b": "b"}
        assert all(hasattr(r, "node_id") for r in handler.records)
    finally:
        casty_log.removeHandler(handler)
        casty_log.setLevel(level)
