"""Cluster sharding figures: 3 node processes on loopback, 1,000 entity ids.

- ``sharded_replies`` (replies/s): every node runs a client actor that keeps ``--in-flight``
  (100) requests in flight to a sharded no-op entity (``Ping`` answered with ``Pong``) over
  entity ids spread over the 1,000 ids; the figure is the sum over the three clients of the
  replies received during ``--seconds``, after a warm-up. About 2/3 of the requests go to an
  entity on another node.
- ``sharded_event_sourced_replies`` (replies/s): the same with an event-sourced counter
  (``Increment`` persisted to a per-node SQLite file, ``synchronous=NORMAL``, reply after the
  write is durable).
- ``unavailable_after_kill`` (s): a probe on a surviving node pings entities that live on the
  third node every 10 ms; that node is SIGKILLed; the figure is the time from the kill to the
  first answer from one of them (now on a survivor), the median over the probed entities.
- ``unavailable_per_moved_shard`` (s): a fourth node joins; the probe pings 100 entities
  every 10 ms while shards move to the newcomer; for each entity that moved, the longest gap
  between two answers; the figure is the median over the moved entities (the max is printed
  too).
- the peer baseline, in the same run: the same no-op work as Celery tasks with a Redis broker
  and result backend and one worker process (``--pool solo``), 100 in flight, in
  tasks/s; skipped with a message when ``celery`` is not importable or ``redis-server`` is not
  installed. The Redis server is started on a free 127.0.0.1 port and stopped by this script.

Prints one JSON line per figure: ``{"name", "ours", "baseline", "ratio", "unit"}`` (ratio above
1 is better for us; the latency figures have no baseline).

Usage: ``python benchmarks/sharding.py [--seconds 5] [--in-flight 100] [--failover-only]``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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
    free_port,
    load_client,
    node_processes,
    node_system,
    prober,
    run_load,
    seconds_to_first_answers,
)

from casty import ActorContext, ActorRef, Behavior, Behaviors, ShardEnvelope  # noqa: E402
from casty.serializers.msgpack import MsgpackSerializer  # noqa: E402
from casty.sharding import GetShardRegionState, ShardingSettings  # noqa: E402

ENTITIES = 1_000

# ---- messages (pinned wire names: every node runs this file as __main__) --------------------


@dataclass(frozen=True, slots=True)
class Ping:
    n: int
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Pong:
    n: int
    entity_id: str = ""


@dataclass(frozen=True, slots=True)
class WhereIs:
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Here:
    entity_id: str
    node: str


@dataclass(frozen=True, slots=True)
class WhereAsk:
    entity_id: str

    def envelope(self, reply_to: ActorRef[Any]) -> ShardEnvelope:
        return ShardEnvelope(self.entity_id, WhereIs(reply_to))


def serializer() -> MsgpackSerializer:
    result = MsgpackSerializer()
    for cls in (Ping, Pong, Increment, Incremented, WhereIs, Here):
        result.register(cls, name=f"bench.sharding.{cls.__name__}")
    return result


# ---- entities --------------------------------------------------------------------------------


def echo_entity(entity_id: str) -> Behavior[Any]:
    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if msg.__class__ is Ping:
            msg.reply_to.tell(Pong(msg.n, entity_id))
        elif msg.__class__ is WhereIs:
            msg.reply_to.tell(Here(entity_id, ctx.system.address))
        return Behaviors.same()

    return Behaviors.receive(receive)


# ---- a node process --------------------------------------------------------------------------


async def node_main(args: argparse.Namespace) -> None:
    from casty.journals import as_journal

    system = node_system(args, serializer())
    journal = as_journal(f"sqlite:///{args.db}?synchronous=normal")
    settings = ShardingSettings(rebalance_interval=1.0)
    async with journal, system:
        echo = system.spawn(
            Behaviors.sharded(echo_entity, num_shards=256, settings=settings), "echo"
        )
        counts = counter_entity(journal, lambda ctx, entity_id, cmd: Pong(cmd.n))
        counter = system.spawn(
            Behaviors.sharded(counts, num_shards=256, settings=settings), "counter"
        )
        ids = [f"e{i}" for i in range(ENTITIES)]
        the_client = system.spawn(load_client(Pong, lambda _: True), "client")
        answers: dict[str, list[float]] = {}
        probe = system.spawn(
            prober(
                answers,
                lambda ref: Ping(int(time.time() * 1000), ref),
                lambda msg: isinstance(msg, Pong),
            ),
            "probe",
        )
        emit("up", node=str(system.node_address))
        loop = asyncio.get_running_loop()
        async for words in commands():
            if words[0] == "run":
                kind, warmup, seconds, in_flight = words[1], *map(float, words[2:5])
                region, request = (echo, Ping) if kind == "ping" else (counter, Increment)
                done: asyncio.Future[int] = loop.create_future()
                the_client.tell(
                    Start(
                        region, ids, request, int(in_flight), args.index * 13, warmup, seconds,
                        done,
                    )
                )  # fmt: skip
                emit("result", replies=await done, seconds=seconds)
            elif words[0] == "where":
                here: dict[str, str] = {}
                for i in range(ENTITIES):
                    ask = WhereAsk(f"e{i}")
                    reply = await system.ask(echo, ask.envelope, timeout=10.0)
                    here[reply.entity_id] = reply.node
                emit("where", entities=here)
            elif words[0] == "probe":
                probe.tell(Probe(echo, tuple(words[1:])))
                emit("probing")
            elif words[0] == "answers":
                emit("answers", answers=answers)
            elif words[0] == "shards":
                state = await system.ask(echo, GetShardRegionState, timeout=5.0)
                emit("shards", count=len(state.shards))


# ---- the orchestrator ------------------------------------------------------------------------


def unavailability(
    nodes: list[NodeProcess], tmp: Path, args: argparse.Namespace
) -> tuple[float, float, float]:
    """(median seconds after a kill, median and max gap per moved entity in a rebalance)."""
    survivor, victim = nodes[0], nodes[2]
    survivor.send("where")
    where = survivor.read("where")["entities"]
    on_victim = sorted(e for e, n in where.items() if n == victim.root)[:20]
    after_kill = statistics.median(
        seconds_to_first_answers(survivor, victim, "probe", on_victim, 1.0, args.kill_wait)
    )
    # Rebalance: a fourth node joins; probe 100 entities on the survivors.
    probed = sorted(e for e, n in where.items() if n != victim.root)[:100]
    survivor.send("probe " + " ".join(probed))
    survivor.read("probing")
    time.sleep(0.5)
    joined_at = time.time()
    newcomer = NodeProcess(__file__, 3, free_port(), nodes[0].port, 1, tmp / "node-3.db")
    newcomer.read("up")
    time.sleep(args.rebalance_wait)
    survivor.send("answers")
    answers = survivor.read("answers")["answers"]
    survivor.send("where")
    where_after = survivor.read("where")["entities"]
    moved = [e for e in probed if where_after.get(e) == newcomer.root]
    gaps = []
    for entity_id in moved:
        times = [t for t in answers[entity_id] if t >= joined_at]
        gaps.append(max((b - a for a, b in itertools.pairwise(times)), default=0.0))
    newcomer.stop()
    nodes.append(newcomer)
    if not gaps:
        return after_kill, float("nan"), float("nan")
    return after_kill, statistics.median(gaps), max(gaps)


# ---- the Celery baseline ---------------------------------------------------------------------

CELERY_APP = """
from celery import Celery
app = Celery("bench", broker="redis://127.0.0.1:{port}/0", backend="redis://127.0.0.1:{port}/1")
app.conf.worker_prefetch_multiplier = 100
app.conf.task_acks_late = False

@app.task
def ping(n):
    return n
"""


def celery_baseline(tmp: Path, args: argparse.Namespace) -> float | None:
    redis_server = shutil.which("redis-server")
    try:
        importlib.import_module("celery")
    except ImportError:
        print("# celery baseline skipped: celery is not installed", file=sys.stderr)
        return None
    if redis_server is None:
        print("# celery baseline skipped: redis-server is not installed", file=sys.stderr)
        return None
    port = free_port()
    redis = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    app_dir = tmp / "celery_app"
    app_dir.mkdir()
    (app_dir / "bench_tasks.py").write_text(CELERY_APP.format(port=port))
    env = dict(os.environ, PYTHONPATH=str(app_dir))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench_tasks",
            "worker",
            "--concurrency",
            "1",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        cwd=app_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sys.path.insert(0, str(app_dir))
        import bench_tasks  # type: ignore[import-not-found]

        bench_tasks.ping.delay(0).get(timeout=30)  # the worker is up
        pending: list[Any] = [bench_tasks.ping.delay(n) for n in range(args.in_flight)]
        done = 0
        start = time.monotonic()
        end = start + args.seconds
        n = args.in_flight
        while time.monotonic() < end:
            result = pending.pop(0)
            result.get(timeout=30)
            done += 1
            pending.append(bench_tasks.ping.delay(n))
            n += 1
        elapsed = time.monotonic() - start
        for result in pending:
            result.get(timeout=30)
        return done / elapsed
    finally:
        worker.terminate()
        worker.wait(30)
        redis.terminate()
        redis.wait(10)


# ---- main ------------------------------------------------------------------------------------


def orchestrate(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="casty-bench-sharding-") as name:
        tmp = Path(name)
        with node_processes(__file__, tmp) as nodes:
            if not args.failover_only:
                baseline = celery_baseline(tmp, args)
                replies = run_load(nodes, "ping", args)
                figure("sharded_replies", replies, baseline, "replies/s", in_flight=args.in_flight)
                es_replies = run_load(nodes, "increment", args)
                figure("sharded_event_sourced_replies", es_replies, None, "replies/s")
            else:  # the kill and rebalance probes need the entities started by a load
                run_load(nodes, "ping", argparse.Namespace(**{**vars(args), "seconds": 0.5}))
            if not args.skip_failover:
                after_kill, gap_median, gap_max = unavailability(nodes, tmp, args)
                figure("unavailable_after_kill", after_kill, None, "s")
                figure("unavailable_per_moved_shard", gap_median, None, "s", max=gap_max)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--kill-wait", type=float, default=8.0)
    parser.add_argument("--rebalance-wait", type=float, default=10.0)
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument(
        "--failover-only", action="store_true", help="only the kill and rebalance figures (c)"
    )
    add_node_arguments(parser)
    args = parser.parse_args()
    if args.node:
        asyncio.run(node_main(args))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
