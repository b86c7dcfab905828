"""Replication figures: 3 node processes on loopback, each with its own SQLite journal.

One cluster hosts three sharded event-sourced counter types that differ only in their
`ReplicationConfig`: ``replicas=0`` (the primary's journal only), ``replicas=1, min_acks=1``
and ``replicas=2, min_acks=2`` (every replica confirms before the reply).

- ``replicated_commands_r<R>`` (commands/s): every node runs a client actor that keeps
  ``--in-flight`` (100) ``Increment`` commands in flight to the type's entities (1,000 ids); a
  command counts when its reply (sent by ``then``, after the journal write and ``min_acks``
  replica writes) arrives. The figure is the sum over the three clients during ``--seconds``,
  after a warm-up. Baseline: the ``replicas=0`` figure of the same run; the target of
  ``r1`` is a ratio >= 0.5.
- ``failover_after_kill`` (s): a probe on a surviving node sends an ``Increment`` every 10 ms to
  ``--probes`` entities of the ``replicas=1`` type whose primary is on the third node; that
  node is SIGKILLed; the figure is the time from the kill to the first acknowledged command of
  each entity (now on its promoted replica), the median over the probed entities (the max is
  printed too). Target: <= 5 s with the default settings.

Prints one JSON line per figure: ``{"name", "ours", "baseline", "ratio", "unit"}`` (ratio above
1 is better for us).

Usage: ``python benchmarks/replication.py [--seconds 5] [--in-flight 100] [--quick]
[--skip-failover | --failover-only]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _nodes_bench import (  # noqa: E402  (benchmarks/_nodes_bench.py)
    Increment,
    Incremented,
    NodeProcess,
    Probe,
    Start,
    add_node_arguments,
    commands,
    counter_entity,
    emit,
    figure,
    load_client,
    node_processes,
    node_system,
    prober,
    run_load,
    seconds_to_first_answers,
)

from casty import Behaviors, ShardEnvelope  # noqa: E402
from casty.replication import ReplicationConfig  # noqa: E402
from casty.serializers.msgpack import MsgpackSerializer  # noqa: E402
from casty.sharding import wait_registered  # noqa: E402

ENTITIES = 1_000
REPLICAS = (0, 1, 2)

# ---- messages (pinned wire names: every node runs this file as __main__) --------------------


@dataclass(frozen=True, slots=True)
class Done:
    n: int
    entity_id: str
    node: str
    ok: bool = True  # False: the command failed (not acknowledged; the client sends the next)


def serializer() -> MsgpackSerializer:
    result = MsgpackSerializer()
    for cls in (Increment, Incremented, Done):
        result.register(cls, name=f"bench.replication.{cls.__name__}")
    return result


def type_name(replicas: int) -> str:
    return f"counter-r{replicas}"


def entity_id(replicas: int, i: int) -> str:
    """Ids differ per type: the three types share each node's journal."""
    return f"r{replicas}-e{i % ENTITIES}"


# ---- the entity ------------------------------------------------------------------------------


def counter(journal: Any) -> Any:
    """Answers each ``Increment`` with a `Done` (``ok=False``: the write failed)."""
    return counter_entity(
        journal,
        lambda ctx, entity_id, cmd: Done(cmd.n, entity_id, str(ctx.system.address)),
        lambda ctx, entity_id, cmd: Done(cmd.n, entity_id, str(ctx.system.address), ok=False),
    )


# ---- a node process --------------------------------------------------------------------------


async def node_main(args: argparse.Namespace) -> None:
    from casty.journals import SQLiteJournal

    system = node_system(args, serializer())
    journal = SQLiteJournal(args.db, synchronous="NORMAL")
    async with journal, system:
        regions = {
            r: system.spawn(
                Behaviors.sharded(
                    counter(journal),
                    num_shards=64,
                    replication=ReplicationConfig(replicas=r, min_acks=r),
                    journal=journal,
                ),
                type_name(r),
            )
            for r in REPLICAS
        }
        for region in regions.values():
            await wait_registered(system, region)
        ids = {r: [entity_id(r, i) for i in range(ENTITIES)] for r in REPLICAS}
        the_client = system.spawn(load_client(Done, lambda done: done.ok), "client")
        answers: dict[str, list[float]] = {}
        probe = system.spawn(
            prober(
                answers,
                lambda ref: Increment(0, ref),
                lambda msg: isinstance(msg, Done) and msg.ok,
            ),
            "probe",
        )
        emit("up", node=str(system.node_address))
        loop = asyncio.get_running_loop()
        async for words in commands():
            if words[0] == "run":
                r, in_flight = int(words[1]), int(words[4])
                warmup, seconds = float(words[2]), float(words[3])
                done: asyncio.Future[int] = loop.create_future()
                start = Start(
                    regions[r], ids[r], Increment, in_flight, args.index * 13, warmup, seconds, done
                )
                the_client.tell(start)
                emit("result", replies=await done, seconds=seconds)
            elif words[0] == "where":
                r, count = int(words[1]), int(words[2])
                here: dict[str, str] = {}
                for i in range(count):
                    target = entity_id(r, i)
                    reply = await system.ask(
                        regions[r],
                        lambda ref, t=target: ShardEnvelope(t, Increment(0, ref)),  # type: ignore[misc]
                        timeout=10.0,
                    )
                    here[reply.entity_id] = reply.node
                emit("where", entities=here)
            elif words[0] == "probe":
                probe.tell(Probe(regions[int(words[1])], tuple(words[2:])))
                emit("probing")
            elif words[0] == "answers":
                emit("answers", answers=answers)


# ---- the orchestrator ------------------------------------------------------------------------


def failover(nodes: list[NodeProcess], args: argparse.Namespace) -> list[float]:
    """Seconds from the kill of the third node to each probed entity's first ack after it."""
    survivor, victim = nodes[0], nodes[2]
    survivor.send("where 1 60")
    where = survivor.read("where")["entities"]
    on_victim = sorted(e for e, n in where.items() if n == victim.root)[: args.probes]
    if not on_victim:
        raise RuntimeError("no probed entity has its primary on the third node")
    return seconds_to_first_answers(survivor, victim, "probe 1", on_victim, 0.5, args.kill_wait)


def orchestrate(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="casty-bench-replication-") as name,
        node_processes(__file__, Path(name)) as nodes,
    ):
        if not args.failover_only:
            rates = {r: run_load(nodes, str(r), args) for r in REPLICAS}
            figure("replicated_commands_r0", rates[0], None, "commands/s")
            for r in (1, 2):
                figure(f"replicated_commands_r{r}", rates[r], rates[0], "commands/s",
                       min_acks=r, in_flight=args.in_flight)  # fmt: skip
        if not args.skip_failover:
            times = failover(nodes, args)
            figure("failover_after_kill", statistics.median(times), None, "s",
                   max=round(max(times), 4), probes=len(times))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--probes", type=int, default=10, help="entities probed for failover")
    parser.add_argument("--kill-wait", type=float, default=8.0, help="seconds watched after it")
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--failover-only", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (1 s windows, 3 probes)"
    )
    add_node_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.in_flight, args.probes = 1.0, 0.3, 30, 3
    if args.node:
        asyncio.run(node_main(args))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
