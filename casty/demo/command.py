"""``casty demo``: the spec's task queue on three node processes, one of them killed part-way.

It starts three nodes on 127.0.0.1 (free ports; one SQLite journal file each in a temporary
folder, removed afterwards unless ``--keep`` or the run failed; or one shared PostgreSQL
database with ``--journal postgresql://...``), waits until the cluster formed with
``required_quorum=3``, and submits ``--tasks`` tasks through a `ClusterClient` to 64
event-sourced task queues sharded over the nodes, replicated with
``ReplicationConfig(replicas=1, min_acks=1)``. Once 40 % of the tasks are acknowledged it
SIGKILLs the youngest node (``--no-kill`` skips it). Then it reads every queue back and prints
a summary: tasks acknowledged and completed, lost and duplicated (both must be 0), tasks/s,
p50/p99 latency from first send to ack, and the time from the kill until every queue
acknowledged again (those whose primary or replica was on the killed node included). Unknown
outcomes (timeouts around the kill) are resent with the same task id, which the queues
acknowledge without storing twice.

Exit status 0 when every task was acknowledged and completed and none was lost or
duplicated, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

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
    demo.add_argument("--tasks", type=int, default=10_000, help="tasks to submit (10000)")
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


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo with the parsed ``args``; return the exit status.

    Raises:
        ConfigurationError: ``--tasks`` below 1, or a ``--journal`` that is not PostgreSQL.
    """
    if args.tasks < 1:
        raise ConfigurationError(f"--tasks must be >= 1, got {args.tasks}")
    journal: str | None = args.journal
    if journal is not None and not journal.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(
            f"--journal takes a postgresql:// URL (the nodes share it), got {journal!r}"
        )
    summary = asyncio.run(_demo(args.tasks, kill=not args.no_kill, journal=journal, keep=args.keep))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_render(summary))
    return 0 if summary["ok"] else 1


class _Progress:
    """A one-line progress bar on a terminal; a line per 10 % otherwise."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = total
        self._tty = stream.isatty()
        self._tenth = -1
        self._note = ""
        self._on_bar = False  # the cursor is at the end of a drawn bar

    def say(self, text: str) -> None:
        self._end_line()
        print(text, file=self._stream, flush=True)

    def note(self, text: str) -> None:
        self._note = text

    def update(self, done: int, rate: float) -> None:
        fraction = min(done / self._total, 1.0)
        if self._tty:
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            line = f"\r[{bar}] {done:,}/{self._total:,} acknowledged  {rate:,.0f} tasks/s"
            note = f"  {self._note}" if self._note else ""
            self._stream.write(f"{line}{note}\x1b[K")
            self._stream.flush()
            self._on_bar = True
        elif int(fraction * 10) > self._tenth:
            self._tenth = int(fraction * 10)
            print(f"{done:,}/{self._total:,} acknowledged", file=self._stream, flush=True)

    def _end_line(self) -> None:
        if self._on_bar:
            self._stream.write("\n")
            self._on_bar = False


async def _demo(tasks: int, *, kill: bool, journal: str | None, keep: bool) -> dict[str, Any]:
    from casty.client import ClusterClient
    from casty.demo.cluster import DemoCluster
    from casty.demo.load import TaskLoad, percentile
    from casty.demo.node import REPLICATION, SYSTEM_NAME
    from casty.demo.queue import TYPE_NAME

    loop = asyncio.get_running_loop()
    wall = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="casty-demo-"))
    progress = _Progress(sys.stderr, tasks)
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
    try:
        progress.say(f"starting {cluster.size} node processes (journals: {summary['journal']})")
        await cluster.start_all()
        summary["cluster_formed_s"] = round(time.monotonic() - wall, 2)
        contacts = [cluster.address(n) for n in range(cluster.size)]
        async with ClusterClient(contact_points=contacts, system_name=SYSTEM_NAME) as client:
            ref = await client.shard_ref(TYPE_NAME, num_shards=SHARDS)
            load = TaskLoad(client, ref, run_id=uuid.uuid4().hex[:8], queues=QUEUES, tasks=tasks)
            progress.say(f"cluster up; submitting {tasks:,} tasks through a ClusterClient")
            runner = asyncio.create_task(load.run())
            killed: dict[str, Any] | None = None
            while not runner.done():
                await asyncio.wait({runner}, timeout=0.1)
                elapsed = max(loop.time() - load.started, 1e-9)
                progress.update(load.acknowledged, load.acknowledged / elapsed)
                if kill and killed is None and load.acknowledged >= tasks * KILL_AT:
                    killed = _kill_youngest(client, cluster, load, SHARDS)
                    progress.note(f"{killed['node']} killed")
            await runner
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
        if killed is not None:
            back = load.served_again(killed.pop("at"))
            killed["kill_to_serving_s"] = None if back is None else round(back, 2)
        summary["killed"] = killed
        summary["ok"] = verdict.ok and load.acknowledged == tasks and not load.stalled
    except BaseException:
        keep = True  # the error names a node's log in the folder
        raise
    finally:
        await cluster.close()
        if keep or not summary.get("ok"):  # a failed run keeps the node logs to look at
            summary["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    summary["wall_s"] = round(time.monotonic() - wall, 2)
    return summary


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
        ("acknowledged", f"{s['acknowledged']:,} of {s['tasks']:,} tasks"),
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
            f"{s['resent']:,} submits with the same task id "
            f"({', '.join(f'{k}: {v:,}' for k, v in s['resend_reasons'].items()) or 'none'})",
        ),
    ]
    killed = s["killed"]
    if killed is None:
        rows.append(
            ("kill", "none (--no-kill)" if not s["kill"] else "none (the load ended first)")
        )
    else:
        back = killed["kill_to_serving_s"]
        rows.append(
            (
                "kill",
                f"{killed['node']} SIGKILLed at {killed['at_acknowledged']:,} acknowledged; "
                f"it hosted {killed['queues_on_it']} queues; all queues served again after "
                + (f"{back} s" if back is not None else "(never)"),
            )
        )
    rows.append(("wall time", f"{s['wall_s']} s (cluster formed in {s['cluster_formed_s']} s)"))
    if "workdir" in s:
        rows.append(("kept", s["workdir"]))
    rows.append(("result", "OK" if s["ok"] else "FAILED"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
