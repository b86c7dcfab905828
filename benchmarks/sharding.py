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
import contextlib
import importlib
import itertools
import json
import os
import shutil
import signal
import socket
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

from casty import ActorContext, ActorRef, Behavior, Behaviors, ShardEnvelope  # noqa: E402
from casty.cluster import ClusteredActorSystem  # noqa: E402
from casty.serializers.msgpack import MsgpackSerializer  # noqa: E402
from casty.sharding import GetShardRegionState, ShardingSettings  # noqa: E402

ENTITIES = 1_000
PROBE_INTERVAL = 0.01

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
class Increment:
    n: int
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Incremented:
    pass


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


def counter_entity(journal: Any) -> Any:
    def factory(entity_id: str) -> Behavior[Any]:
        def on_event(state: int, event: Any) -> int:
            return state + 1

        def on_command(ctx: ActorContext[Any], state: int, cmd: Any) -> Behavior[Any]:
            reply_to, n = cmd.reply_to, cmd.n
            return Behaviors.persisted(Incremented(), then=lambda s: reply_to.tell(Pong(n)))

        return Behaviors.event_sourced(
            entity_id=entity_id,
            journal=journal,
            initial_state=0,
            on_event=on_event,
            on_command=on_command,
        )

    return factory


# ---- the client actor ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    region: ActorRef[Any]
    kind: str  # "ping" or "increment"
    in_flight: int
    offset: int
    warmup: float
    seconds: float
    done: asyncio.Future[int]


def client() -> Behavior[Any]:
    """Keeps ``in_flight`` requests going: each reply sends the next request."""
    ids = [f"e{i}" for i in range(ENTITIES)]
    start = end = 0.0
    count = n = offset = 0
    done: asyncio.Future[int] | None = None
    tell: Any = None
    make: Any = Ping

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        nonlocal start, end, count, n, offset, done, tell, make
        if msg.__class__ is Pong:
            if done is None or done.done():
                return Behaviors.same()
            now = time.monotonic()
            if now >= start:
                if now >= end:
                    done.set_result(count)
                    return Behaviors.same()
                count += 1
            n += 1
            tell(ShardEnvelope(ids[(n * 7 + offset) % ENTITIES], make(n, ctx.self)))
        elif isinstance(msg, Start):
            now = time.monotonic()
            start, end = now + msg.warmup, now + msg.warmup + msg.seconds
            count, n, offset, done = 0, msg.in_flight, msg.offset, msg.done
            tell = msg.region.tell
            make = Ping if msg.kind == "ping" else Increment
            for i in range(msg.in_flight):
                tell(ShardEnvelope(ids[(i * 7 + offset) % ENTITIES], make(i, ctx.self)))
        return Behaviors.same()

    return Behaviors.receive(receive)


# ---- the probe actor (unavailability) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    region: ActorRef[Any]
    entity_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProbeTick:
    pass


def prober(answers: dict[str, list[float]]) -> Behavior[Any]:
    targets: list[str] = []
    region: list[ActorRef[Any]] = []

    def with_timers(timers: Any) -> Behavior[Any]:
        def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if isinstance(msg, Probe):
                targets[:] = msg.entity_ids
                region[:] = [msg.region]
                for entity_id in targets:
                    answers.setdefault(entity_id, [])
                timers.start_periodic_timer("probe", ProbeTick(), PROBE_INTERVAL)
            elif isinstance(msg, ProbeTick):
                now_ms = int(time.time() * 1000)
                for entity_id in targets:
                    region[0].tell(ShardEnvelope(entity_id, Ping(now_ms, ctx.self)))
            elif isinstance(msg, Pong):
                answers[msg.entity_id].append(time.time())
            return Behaviors.same()

        return Behaviors.receive(receive)

    return Behaviors.with_timers(with_timers)


# ---- a node process --------------------------------------------------------------------------


def emit(kind: str, **fields: Any) -> None:
    print(json.dumps({"kind": kind, **fields}), flush=True)


async def node_main(args: argparse.Namespace) -> None:
    from casty.journals import as_journal

    seeds = [("127.0.0.1", args.seed)]
    system = ClusteredActorSystem(
        "bench",
        port=args.port,
        node_id=f"node-{args.index}",
        seed_nodes=seeds,
        required_quorum=args.quorum,
        serializer=serializer(),
    )
    journal = as_journal(f"sqlite:///{args.db}?synchronous=normal")
    settings = ShardingSettings(rebalance_interval=1.0)
    async with journal, system:
        echo = system.spawn(
            Behaviors.sharded(echo_entity, num_shards=256, settings=settings), "echo"
        )
        counter = system.spawn(
            Behaviors.sharded(counter_entity(journal), num_shards=256, settings=settings),
            "counter",
        )
        the_client = system.spawn(client(), "client")
        answers: dict[str, list[float]] = {}
        probe = system.spawn(prober(answers), "probe")
        emit("up", node=str(system.node_address))
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            words = line.decode().split()
            if not words:
                continue
            if words[0] == "run":
                kind, warmup, seconds, in_flight = words[1], *map(float, words[2:5])
                region = echo if kind == "ping" else counter
                done: asyncio.Future[int] = loop.create_future()
                the_client.tell(
                    Start(region, kind, int(in_flight), args.index * 13, warmup, seconds, done)
                )
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
            elif words[0] == "quit":
                break


# ---- the orchestrator ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    def __init__(self, index: int, port: int, seed: int, quorum: int, db: Path) -> None:
        self.index = index
        self.port = port
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--node",
                "--index",
                str(index),
                "--port",
                str(port),
                "--seed",
                str(seed),
                "--quorum",
                str(quorum),
                "--db",
                str(db),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def read(self, kind: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"node {self.index} exited")
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if data.get("kind") == kind:
                    return data  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def figure(name: str, ours: float, baseline: float | None, unit: str, **extra: Any) -> None:
    ratio = None
    if baseline:
        ratio = round(ours / baseline, 2) if unit.endswith("/s") else round(baseline / ours, 2)
    line = {"name": name, "ours": round(ours, 4), "baseline": baseline, "ratio": ratio}
    print(json.dumps({**line, "unit": unit, **extra}), flush=True)


def run_load(nodes: list[NodeProcess], kind: str, args: argparse.Namespace) -> float:
    for node in nodes:
        node.send(f"run {kind} {args.warmup} {args.seconds} {args.in_flight}")
    total = sum(int(node.read("result")["replies"]) for node in nodes)
    return total / float(args.seconds)


def unavailability(
    nodes: list[NodeProcess], tmp: Path, args: argparse.Namespace
) -> tuple[float, float, float]:
    """(median seconds after a kill, median and max gap per moved entity in a rebalance)."""
    survivor, victim = nodes[0], nodes[2]
    survivor.send("where")
    where = survivor.read("where")["entities"]
    victim_root = f"casty://bench@127.0.0.1:{victim.port}"
    on_victim = sorted(e for e, n in where.items() if n == victim_root)[:20]
    survivor.send("probe " + " ".join(on_victim))
    survivor.read("probing")
    time.sleep(1.0)  # the probe answers steadily before the kill
    killed_at = time.time()
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    time.sleep(args.kill_wait)
    survivor.send("answers")
    answers = survivor.read("answers")["answers"]
    firsts = [min((t for t in answers[e] if t > killed_at), default=None) for e in on_victim]
    after_kill = statistics.median(
        (t - killed_at) if t is not None else float("inf") for t in firsts
    )
    # Rebalance: a fourth node joins; probe 100 entities on the survivors.
    probed = sorted(e for e, n in where.items() if n != victim_root)[:100]
    survivor.send("probe " + " ".join(probed))
    survivor.read("probing")
    time.sleep(0.5)
    joined_at = time.time()
    newcomer = NodeProcess(3, free_port(), nodes[0].port, 1, tmp / "node-3.db")
    newcomer.read("up")
    time.sleep(args.rebalance_wait)
    survivor.send("answers")
    answers = survivor.read("answers")["answers"]
    survivor.send("where")
    where_after = survivor.read("where")["entities"]
    newcomer_root = f"casty://bench@127.0.0.1:{newcomer.port}"
    moved = [e for e in probed if where_after.get(e) == newcomer_root]
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
        ports = [free_port() for _ in range(3)]
        nodes = [NodeProcess(0, ports[0], ports[0], 3, tmp / "node-0.db")]
        nodes += [NodeProcess(i, ports[i], ports[0], 3, tmp / f"node-{i}.db") for i in (1, 2)]
        try:
            for node in nodes:
                node.read("up")
            if not args.failover_only:
                baseline = celery_baseline(tmp, args)
                replies = run_load(nodes, "ping", args)
                figure("sharded_replies", replies, baseline, "replies/s", in_flight=args.in_flight)
                es_replies = run_load(nodes, "increment", args)
                figure("sharded_event_sourced_replies", es_replies, None, "replies/s")
            if not args.skip_failover:
                after_kill, gap_median, gap_max = unavailability(nodes, tmp, args)
                figure("unavailable_after_kill", after_kill, None, "s")
                figure("unavailable_per_moved_shard", gap_median, None, "s", max=gap_max)
        finally:
            for node in nodes:
                node.stop()


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
    parser.add_argument("--node", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--quorum", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node:
        asyncio.run(node_main(args))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
