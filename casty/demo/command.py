"""``casty demo``: the spec's task queue on three node processes, one of them killed part-way.

It starts three nodes on 127.0.0.1 (free ports; one SQLite journal file each in a temporary
folder, removed afterwards unless ``--keep`` or the run failed; or one shared PostgreSQL
database with ``--journal postgresql://...``), waits until the cluster formed with
``required_quorum=3``, and submits ``--tasks`` tasks through a `ClusterClient` to 64
event-sourced task queues sharded over the nodes, replicated with
``ReplicationConfig(replicas=1, min_acks=1)``. At the ack that makes 40 % of the tasks
acknowledged it SIGKILLs the youngest node (``--no-kill`` skips it). Then it reads every
queue back and prints a summary: tasks acknowledged and completed, lost and duplicated
(both must be 0), tasks/s, p50/p99 latency from first send to ack, and the time from the
kill until every queue acknowledged again (those whose primary or replica was on the killed
node included). Unknown outcomes (timeouts around the kill) are resent with the same task
id, which the queues acknowledge without storing twice.

Exit status 0 when every task was acknowledged and completed and none was lost or
duplicated, 1 otherwise. SIGINT (Ctrl-C) or SIGTERM stops the load, SIGKILLs the nodes,
removes the folder (unless ``--keep``), prints ``interrupted`` and exits with 130 or 143.

The demo process's own log records (its client's) go to ``client.log`` in the folder;
warnings and errors also go to stderr, except the warnings about the node it killed on
purpose (its connection resets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casty.demo.console import ClientLogs, Interrupts, Progress, handled_signals
from casty.errors import ConfigurationError

if TYPE_CHECKING:
    from casty.client import ClusterClient
    from casty.demo.cluster import DemoCluster
    from casty.demo.load import TaskLoad

__all__ = ["add_demo", "run_demo"]

QUEUES = 64
SHARDS = 64
KILL_AT = 0.4  # fraction of the tasks acknowledged when a node is killed


def add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``casty demo`` (the handler imports the cluster stack only when it runs)."""
    demo = commands.add_parser(
        "demo",
        help="run a task queue on 3 local node processes and kill one",
        description=(
            "Start three node processes on 127.0.0.1, submit tasks through a ClusterClient "
            "to 64 replicated event-sourced task queues, SIGKILL one node part-way, read every "
            "queue back and print tasks acknowledged and completed, lost and duplicated (both "
            "must be 0), tasks/s, p50/p99 latency and the time from the kill until every queue "
            "is served again. Exit status 1 when anything was lost, duplicated or unfinished."
        ),
    )
    demo.add_argument("--tasks", type=_positive_int, default=10_000, help="tasks to submit (10000)")
    demo.add_argument("--no-kill", action="store_true", help="do not kill a node")
    demo.add_argument(
        "--journal",
        default=None,
        metavar="URL",
        help="a postgresql:// URL shared by the nodes (default: one SQLite file per node)",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (journals, node logs)"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(handler=run_demo)


def _positive_int(text: str) -> int:
    """An argparse type: a usage error (exit status 2) for anything but an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo with the parsed ``args``; return the exit status.

    Raises:
        ConfigurationError: a ``--journal`` that is not PostgreSQL.
    """
    journal: str | None = args.journal
    if journal is not None and not journal.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(
            f"--journal takes a postgresql:// URL (the nodes share it), got {journal!r}"
        )
    handled = handled_signals()  # before asyncio.run replaces SIGINT's handler
    try:
        summary = asyncio.run(
            _demo(
                args.tasks, kill=not args.no_kill, journal=journal, keep=args.keep, signals=handled
            )
        )
    except KeyboardInterrupt:  # before the demo handles signals itself (nothing to clean up)
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    if "interrupted" in summary:
        return 128 + signal.Signals[summary["interrupted"]]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_render(summary))
    return 0 if summary["ok"] else 1


async def _demo(
    tasks: int, *, kill: bool, journal: str | None, keep: bool, signals: list[signal.Signals]
) -> dict[str, Any]:
    from casty.demo.cluster import DemoCluster
    from casty.demo.node import REPLICATION

    wall = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="casty-demo-"))
    cluster = DemoCluster(workdir, journal=journal, shards=SHARDS)
    summary: dict[str, Any] = {
        "nodes": cluster.size,
        "journal": "postgresql, shared" if journal else "sqlite, one file per node",
        "queues": QUEUES,
        "shards": SHARDS,
        "replication": {"replicas": REPLICATION.replicas, "min_acks": REPLICATION.min_acks},
        "tasks": tasks,
        "kill": kill,
    }
    progress = Progress(sys.stderr, tasks)
    logs = ClientLogs(workdir / "client.log")
    interrupts = Interrupts(cluster, signals, logs)
    failed = True  # an error keeps the folder: it names a node's log there
    try:
        await _run(cluster, summary, progress, logs, tasks=tasks, kill=kill, wall=wall)
        failed = not summary["ok"]  # a failed run keeps the node logs to look at
    except asyncio.CancelledError:
        if interrupts.received is None:
            raise
        if (task := asyncio.current_task()) is not None:
            task.uncancel()  # the cancel was ours: the demo ends normally, interrupted
        failed = False
    finally:
        interrupts.cleaning_up()
        await cluster.close(kill=interrupts.received is not None)
        logs.close()
        if keep or failed:
            summary["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupts.received is not None:
        summary["interrupted"] = interrupts.received.name
        progress.say(f"interrupted (kept {workdir})" if "workdir" in summary else "interrupted")
    summary["wall_s"] = round(time.monotonic() - wall, 2)
    return summary


async def _run(
    cluster: DemoCluster,
    summary: dict[str, Any],
    progress: Progress,
    logs: ClientLogs,
    *,
    tasks: int,
    kill: bool,
    wall: float,
) -> None:
    """Start the nodes, run the load (killing a node at `KILL_AT`), read back, fill ``summary``."""
    from casty.client import ClusterClient
    from casty.demo.load import TaskLoad, percentile
    from casty.demo.node import SYSTEM_NAME
    from casty.demo.queue import TYPE_NAME

    loop = asyncio.get_running_loop()
    progress.say(f"starting {cluster.size} node processes (journals: {summary['journal']})")
    await cluster.start_all()
    summary["cluster_formed_s"] = round(time.monotonic() - wall, 2)
    contacts = [cluster.address(n) for n in range(cluster.size)]
    killed: dict[str, Any] = {}
    async with ClusterClient(contact_points=contacts, system_name=SYSTEM_NAME) as client:
        ref = await client.shard_ref(TYPE_NAME, num_shards=SHARDS)
        load = TaskLoad(client, ref, run_id=uuid.uuid4().hex[:8], queues=QUEUES, tasks=tasks)

        def kill_one() -> None:
            killed.update(_kill_youngest(client, cluster, load, SHARDS))
            logs.expect_loss_of(killed["address"])
            progress.note(f"{killed['node']} killed")

        if kill:  # right at the ack that makes it KILL_AT of the tasks
            load.on_acknowledged(math.ceil(tasks * KILL_AT), kill_one)
        progress.say(f"cluster up; submitting {_count(tasks, 'task')} through a ClusterClient")
        runner = asyncio.create_task(load.run())
        try:
            while not runner.done():
                await asyncio.wait({runner}, timeout=0.1)
                elapsed = max(loop.time() - load.started, 1e-9)
                progress.update(load.acknowledged, load.acknowledged / elapsed)
            await runner
        finally:
            if not runner.done():  # interrupted: stop the load before the client closes
                runner.cancel()
                await asyncio.wait({runner})
        progress.say("load done; reading every queue back")
        verdict = await load.read_back()
    latencies = list(load.latencies.values())
    duration = max(load.finished - load.started, 1e-9)
    summary.update(
        acknowledged=load.acknowledged,
        completed=verdict.completed,
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        pending=verdict.pending,
        unread_queues=verdict.unread,
        examples=list(verdict.examples),
        resent=load.resent,
        resend_reasons=dict(load.resend_reasons),
        load_s=round(duration, 2),
        tasks_per_s=round(load.acknowledged / duration, 1),
        latency_p50_ms=round(percentile(latencies, 0.5) * 1000, 1),
        latency_p99_ms=round(percentile(latencies, 0.99) * 1000, 1),
        latency_max_ms=round(max(latencies, default=0.0) * 1000, 1),
    )
    if killed:
        back = load.served_again(killed.pop("at"))
        killed["kill_to_serving_s"] = None if back is None else round(back, 2)
        killed["address"] = str(killed["address"])
    summary["killed"] = killed or None
    summary["ok"] = verdict.ok and load.acknowledged == tasks and not load.stalled


def _kill_youngest(
    client: ClusterClient, cluster: DemoCluster, load: TaskLoad, shards: int
) -> dict[str, Any]:
    """SIGKILL the youngest member (not the coordinator's, the oldest); describe the kill."""
    snapshot = client.topology
    members = sorted(snapshot.members, key=lambda m: m.up_number) if snapshot else []
    victim = members[-1].address if members else cluster.address(cluster.size - 1)
    n = cluster.ports.index(victim.port)
    primaries = load.queues_on(victim, shards)
    at = asyncio.get_running_loop().time()
    cluster.kill(n)
    return {
        "node": cluster.node_id(n),
        "address": victim,
        "at_acknowledged": load.acknowledged,
        "queues_on_it": len(primaries),
        "at": at,
    }


def _render(s: dict[str, Any]) -> str:
    rows = [
        (
            "cluster",
            f"{s['nodes']} node processes, journals: {s['journal']}, "
            f"{s['queues']} queues over {s['shards']} shards, replicas=1 min_acks=1",
        ),
        ("acknowledged", f"{s['acknowledged']:,} of {_count(s['tasks'], 'task')}"),
        ("completed", f"{s['completed']:,} (read back from the queues' state)"),
        ("lost", f"{s['lost']}"),
        ("duplicated", f"{s['duplicated']}"),
    ]
    if s["pending"] or s["unread_queues"]:
        rows.append(("not completed", f"{s['pending']} (queues unread: {s['unread_queues']})"))
    if s["examples"]:
        rows.append(("examples", ", ".join(s["examples"])))
    rows += [
        ("throughput", f"{s['tasks_per_s']:,.0f} tasks/s ({s['load_s']} s of load)"),
        (
            "latency",
            f"p50 {s['latency_p50_ms']:,} ms, p99 {s['latency_p99_ms']:,} ms, "
            f"max {s['latency_max_ms']:,} ms (first send to ack)",
        ),
        (
            "resent",
            f"{_count(s['resent'], 'submit')} with the same task id "
            f"({', '.join(f'{k}: {v:,}' for k, v in s['resend_reasons'].items()) or 'none'})",
        ),
    ]
    rows.append(("kill", _render_kill(s)))
    rows.append(("wall time", f"{s['wall_s']} s (cluster formed in {s['cluster_formed_s']} s)"))
    if "workdir" in s:
        rows.append(("kept", s["workdir"]))
    rows.append(("result", "OK" if s["ok"] else "FAILED"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _render_kill(s: dict[str, Any]) -> str:
    killed = s["killed"]
    if killed is None:
        if not s["kill"]:
            return "none (--no-kill)"
        return f"none (the load stopped before {KILL_AT:.0%} of the tasks were acknowledged)"
    back = killed["kill_to_serving_s"]
    if back is not None:
        after = f"all queues served again after {back} s"
    elif s["acknowledged"] == s["tasks"]:
        after = "no task was left to submit after it (no failover time to measure)"
    else:
        after = "no queue acknowledged a task after it"
    return (
        f"{killed['node']} SIGKILLed at {killed['at_acknowledged']:,} acknowledged; "
        f"it hosted {_count(killed['queues_on_it'], 'queue')}; {after}"
    )


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: ``1 task``, ``2,000 tasks``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
