"""What the multi-process cluster benchmarks share (not a benchmark itself).

A benchmark script runs itself as each node (``--node``, see `add_node_arguments`): the node
reads commands from stdin (`commands`) and answers with JSON lines (`emit`); the orchestrator
starts the nodes (`node_processes`) and drives each through a `NodeProcess`. On the nodes,
`load_client` keeps requests in flight for a timed window and `prober` pings entities every
`PROBE_INTERVAL` seconds, recording when each answers (`seconds_to_first_answers` turns that
into the unavailability after a SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casty import ActorContext, ActorRef, Behavior, Behaviors, ShardEnvelope
from casty.cluster import ClusteredActorSystem
from casty.serializers.msgpack import MsgpackSerializer
from casty.testing import free_ports

SYSTEM = "bench"
PROBE_INTERVAL = 0.01  # seconds between two probes of the same entity

# ---- a node process --------------------------------------------------------------------------


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """The hidden options the orchestrator starts a node process with."""
    parser.add_argument("--node", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--quorum", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)


def node_system(args: argparse.Namespace, serializer: MsgpackSerializer) -> ClusteredActorSystem:
    """The node's actor system, on loopback, joining the seed node (the first one)."""
    return ClusteredActorSystem(
        SYSTEM,
        port=args.port,
        node_id=f"node-{args.index}",
        seed_nodes=[("127.0.0.1", args.seed)],
        required_quorum=args.quorum,
        serializer=serializer,
    )


def emit(kind: str, **fields: Any) -> None:
    print(json.dumps({"kind": kind, **fields}), flush=True)


async def commands() -> AsyncIterator[list[str]]:
    """The words of each non-empty stdin line, until a ``quit`` line or the end of stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.decode().split()
        if not words:
            continue
        if words[0] == "quit":
            return
        yield words


# ---- the counter entity --------------------------------------------------------------------
# Its messages go over the wire: each script registers them under its own pinned names.


@dataclass(frozen=True, slots=True)
class Increment:
    n: int
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Incremented:
    pass


def counter_entity(
    journal: Any,
    reply: Callable[[ActorContext[Any], str, Increment], Any],
    failed: Callable[[ActorContext[Any], str, Increment], Any] | None = None,
) -> Callable[[str], Behavior[Any]]:
    """Event-sourced entities that count `Increment` commands: each persists an `Incremented`
    to ``journal``, then gets ``reply(ctx, entity_id, command)``; with ``failed``, a failed
    write gets ``failed(ctx, entity_id, command)`` (else the journal's failure is logged and
    the command dead-lettered)."""

    def factory(entity_id: str) -> Behavior[Any]:
        def on_event(state: int, event: Any) -> int:
            return state + 1

        def on_command(ctx: ActorContext[Any], state: int, cmd: Increment) -> Behavior[Any]:
            reply_to, answer = cmd.reply_to, reply(ctx, entity_id, cmd)
            refusal = None if failed is None else failed(ctx, entity_id, cmd)
            return Behaviors.persisted(
                Incremented(),
                then=lambda s: reply_to.tell(answer),
                on_failure=None if refusal is None else lambda error: reply_to.tell(refusal),
            )

        return Behaviors.event_sourced(
            entity_id=entity_id,
            journal=journal,
            initial_state=0,
            on_event=on_event,
            on_command=on_command,
        )

    return factory


# ---- the load client actor -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    region: ActorRef[Any]
    ids: Sequence[str]  # the entity ids the requests go to
    request: Callable[[int, ActorRef[Any]], Any]  # the message of the n-th request
    in_flight: int
    offset: int  # where in ``ids`` this client starts (clients on other nodes start elsewhere)
    warmup: float
    seconds: float
    done: asyncio.Future[int]  # set to the replies counted during ``seconds``


def load_client(reply: type[Any], counts: Callable[[Any], bool]) -> Behavior[Any]:
    """Keeps ``in_flight`` requests going: each ``reply`` sends the next request; the replies
    for which ``counts`` holds are counted after the warm-up."""
    start = end = 0.0
    count = n = offset = 0
    done: asyncio.Future[int] | None = None
    tell: Any = None
    ids: Sequence[str] = ()
    request: Any = None

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        nonlocal start, end, count, n, offset, done, tell, ids, request
        if msg.__class__ is reply:
            if done is None or done.done():
                return Behaviors.same()
            now = time.monotonic()
            if now >= start:
                if now >= end:
                    done.set_result(count)
                    return Behaviors.same()
                count += counts(msg)
            n += 1
            tell(ShardEnvelope(ids[(n * 7 + offset) % len(ids)], request(n, ctx.self)))
        elif isinstance(msg, Start):
            now = time.monotonic()
            start, end = now + msg.warmup, now + msg.warmup + msg.seconds
            count, n, offset, done = 0, msg.in_flight, msg.offset, msg.done
            tell, ids, request = msg.region.tell, msg.ids, msg.request
            for i in range(msg.in_flight):
                tell(ShardEnvelope(ids[(i * 7 + offset) % len(ids)], request(i, ctx.self)))
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


def prober(
    answers: dict[str, list[float]],
    request: Callable[[ActorRef[Any]], Any],
    answered: Callable[[Any], bool],
) -> Behavior[Any]:
    """Sends ``request(self)`` to every probed entity each tick; records in
    ``answers[reply.entity_id]`` the wall-clock time of each reply for which ``answered``
    holds."""
    targets: list[str] = []
    region: list[ActorRef[Any]] = []

    def with_timers(timers: Any) -> Behavior[Any]:
        def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if isinstance(msg, Probe):
                targets[:] = msg.entity_ids
                region[:] = [msg.region]
                for target in targets:
                    answers.setdefault(target, [])
                timers.start_periodic_timer("probe", ProbeTick(), PROBE_INTERVAL)
            elif isinstance(msg, ProbeTick):
                for target in targets:
                    region[0].tell(ShardEnvelope(target, request(ctx.self)))
            elif answered(msg):
                answers[msg.entity_id].append(time.time())
            return Behaviors.same()

        return Behaviors.receive(receive)

    return Behaviors.with_timers(with_timers)


# ---- the orchestrator ------------------------------------------------------------------------


def free_port() -> int:
    return free_ports(1)[0]


class NodeProcess:
    """``script --node`` in a child process, driven over its stdin and stdout."""

    def __init__(
        self, script: str, index: int, port: int, seed: int, quorum: int, db: Path
    ) -> None:
        self.index = index
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, script, "--node", "--index", str(index), "--port", str(port),
             "--seed", str(seed), "--quorum", str(quorum), "--db", str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    @property
    def root(self) -> str:
        """The node's address, as the nodes report where an entity lives."""
        return f"casty://{SYSTEM}@127.0.0.1:{self.port}"

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


@contextlib.contextmanager
def node_processes(script: str, tmp: Path, count: int = 3) -> Iterator[list[NodeProcess]]:
    """``count`` nodes of ``script`` (each with a SQLite file in ``tmp``), up; on exit the
    nodes in the list (a caller may add some) are stopped."""
    ports = free_ports(count)
    nodes = [
        NodeProcess(script, i, ports[i], ports[0], count, tmp / f"node-{i}.db")
        for i in range(count)
    ]
    try:
        for node in nodes:
            node.read("up")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def figure(name: str, ours: float, baseline: float | None, unit: str, **extra: Any) -> None:
    ratio = None
    if baseline:
        ratio = round(ours / baseline, 2) if unit.endswith("/s") else round(baseline / ours, 2)
    line = {"name": name, "ours": round(ours, 4), "baseline": baseline, "ratio": ratio}
    print(json.dumps({**line, "unit": unit, **extra}), flush=True)


def run_load(nodes: list[NodeProcess], what: str, args: argparse.Namespace) -> float:
    """Replies per second summed over the nodes' load clients (``run <what> ...``)."""
    for node in nodes:
        node.send(f"run {what} {args.warmup} {args.seconds} {args.in_flight}")
    total = sum(int(node.read("result")["replies"]) for node in nodes)
    return total / float(args.seconds)


def seconds_to_first_answers(
    survivor: NodeProcess,
    victim: NodeProcess,
    probe: str,
    entity_ids: Sequence[str],
    settle: float,
    watch: float,
) -> list[float]:
    """Probe ``entity_ids`` from ``survivor`` (its command ``probe``), SIGKILL ``victim``
    ``settle`` seconds later and watch for ``watch`` seconds: for each entity, the seconds from
    the kill to its first answer after it (infinity: none)."""
    survivor.send(f"{probe} " + " ".join(entity_ids))
    survivor.read("probing")
    time.sleep(settle)  # the probe answers steadily before the kill
    killed_at = time.time()
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    time.sleep(watch)
    survivor.send("answers")
    answers = survivor.read("answers")["answers"]
    firsts = [min((t for t in answers[e] if t > killed_at), default=None) for e in entity_ids]
    return [(t - killed_at) if t is not None else float("inf") for t in firsts]
