"""The spec's distributed task queue, on three node processes (no broker, no external service).

Run ``python examples/task_queue.py``: it starts three nodes on 127.0.0.1 (free ports), each
running the same code below, and exits 0 once every node has submitted its tasks, received
their results and left the cluster. Every node is both "broker" and "worker": the task
entities ``queue:emails`` and ``queue:reports`` live on whichever node the cluster picked, and
any node can submit to them.

``python examples/task_queue.py --node 0 --ports 25520,25521,25522`` runs one node by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from casty import (
    ActorContext,
    ActorRef,
    Behavior,
    Behaviors,
    EventStreamSubscribe,
    MemberLeft,
    MemberUp,
    ShardEnvelope,
    UnreachableMember,
)
from casty.cluster import ClusteredActorSystem

log = logging.getLogger("task-queue")


# -- the task queue, as the spec writes it ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """What a task does: a named piece of work with its argument."""

    name: str
    argument: str


send_welcome = Job("send_welcome", "ada@example.org")
generate_pdf = Job("generate_pdf", "report-2026-11")


@dataclass(frozen=True, slots=True)
class SubmitTask:
    payload: Job
    reply_to: ActorRef[TaskResult]


@dataclass(frozen=True, slots=True)
class TaskResult:
    result: str


TaskMsg = SubmitTask


async def execute(payload: Job) -> str:
    await asyncio.sleep(0.01)  # stands for the real work (sending a mail, rendering a PDF)
    return f"{payload.name}({payload.argument}) done"


def task_worker(entity_id: str) -> Behavior[TaskMsg]:
    def idle() -> Behavior[TaskMsg]:
        async def receive(ctx: ActorContext[TaskMsg], msg: TaskMsg) -> Behavior[TaskMsg]:
            match msg:
                case SubmitTask(payload, reply_to):
                    result = await execute(payload)
                    reply_to.tell(TaskResult(result))
            return idle()

        return Behaviors.receive(receive)

    return idle()


def membership_logger() -> Behavior[MemberUp | MemberLeft]:
    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        match msg:
            case MemberUp(member=m):
                log.info(f"Worker joined: {m.address}")
            case MemberLeft(member=m):
                log.info(f"Worker left: {m.address}")
        return Behaviors.same()

    return Behaviors.receive(receive)


def unreachable_logger() -> Behavior[UnreachableMember]:
    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        match msg:
            case UnreachableMember(member=m):
                log.warning(f"Node unreachable: {m.address}, shards will be reallocated")
        return Behaviors.same()

    return Behaviors.receive(receive)


async def run_node(index: int, ports: list[int]) -> None:
    async with ClusteredActorSystem(
        name="task-queue",
        host="127.0.0.1",
        port=ports[index],
        node_id=f"worker-{index + 1}",
        seed_nodes=[("127.0.0.1", port) for i, port in enumerate(ports) if i != index],
        required_quorum=3,  # startup blocks until 3 nodes are UP
    ) as system:
        monitor = system.spawn(membership_logger(), "membership-monitor")
        system.event_stream.tell(EventStreamSubscribe(event_type=MemberUp, handler=monitor))
        system.event_stream.tell(EventStreamSubscribe(event_type=MemberLeft, handler=monitor))
        alert = system.spawn(unreachable_logger(), "unreachable-alert")
        system.event_stream.tell(EventStreamSubscribe(event_type=UnreachableMember, handler=alert))

        tasks = system.spawn(Behaviors.sharded(task_worker, num_shards=256), "tasks")
        # Submit from any node: routing is transparent.
        for queue, job in (("queue:emails", send_welcome), ("queue:reports", generate_pdf)):

            def submit(reply_to: ActorRef[TaskResult], queue: str = queue, job: Job = job) -> Any:
                return ShardEnvelope(queue, SubmitTask(job, reply_to))

            reply: TaskResult = await system.ask(tasks, submit, timeout=30.0)
            print(f"worker-{index + 1}: {queue} -> {reply.result}", flush=True)
    # Leaving the block left the cluster gracefully: this node's shards were handed off first.


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_cluster() -> int:
    ports = free_ports(3)
    text = ",".join(map(str, ports))
    children = [
        subprocess.Popen([sys.executable, __file__, "--node", str(i), "--ports", text])
        for i in range(3)
    ]
    codes = []
    for child in children:
        try:
            codes.append(child.wait(timeout=90))
        except subprocess.TimeoutExpired:
            child.kill()
            codes.append(child.wait())
    print(f"node exit codes: {codes}", flush=True)
    return 0 if codes == [0, 0, 0] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--node", type=int, default=None, help="run node N (0, 1 or 2)")
    parser.add_argument("--ports", default=None, help="the three nodes' ports, comma-separated")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("casty").setLevel(logging.WARNING)
    if args.node is None:
        return run_cluster()
    asyncio.run(run_node(args.node, [int(p) for p in args.ports.split(",")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
