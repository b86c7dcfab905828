"""Cluster membership figures with the default settings, on loopback.

Figures (one JSON line each):

- ``formation_s`` for N = 3 and 10 node *processes* (``python -m casty.cluster.node``, every
  node seeded with the first three addresses, all spawned at once): seconds from the last
  process spawn until every node reports N members up (``ours``); also from the first spawn,
  and from the last node bound (which leaves out the interpreter start). Node processes run
  from cached bytecode, as an installed package does, even under PYTHONDONTWRITEBYTECODE.
- ``formation_s`` for N = 30 nodes in *one process* (started together with ``asyncio.gather``).
- ``sigkill_to_removed_s``: three node processes; the leader is SIGKILLed; seconds until every
  survivor reports it removed (median and worst over ``--kill-runs``).
- ``pause_false_downings``: three node processes for ``--pause-run`` seconds; one is SIGSTOPped
  for 1 s every 10 s; the number of times any node suspected or downed it (target 0).
- ``gossip_bytes_per_s_per_node`` at rest for N = 10 and 30 (one process, every connection
  wrapped in a byte-counting transport): all membership bytes sent per second per node
  (gossip digests plus heartbeats), and the gossip share alone (frames that carry gossip).
  ``growth`` compares the per-node rate at 30 with the rate at 10 (linear growth: at most 3x).

No same-run baseline exists for these (no other cluster library runs here), so ``baseline`` is
Akka Cluster's documented default behaviour where it has one (failure detection with
``acceptable-heartbeat-pause`` 3 s plus split brain resolver ``stable-after`` 20 s: about 45 s
from crash to removal, 25 s tuned, as the issue states), else the issue's target; each line
says which (``baseline_source``). ``ratio`` is baseline / ours for times (above 1: faster than
the baseline).

Usage: ``python benchmarks/cluster.py [--kill-runs 3] [--pause-run 60] [--window 10]
[--one-process-n 30] [--skip processes,one-process,kill,pause,bytes]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from casty.abc import Address, Connection, ConnectionHandler, Listener, Transport
from casty.cluster import ClusterConfig, ClusteredActorSystem
from casty.testing import free_ports
from casty.transports import as_transport

ROOT = Path(__file__).resolve().parents[1]
AKKA_FAILOVER_S = 45.0
AKKA_SOURCE = (
    "Akka Cluster documented defaults (heartbeat 1 s, acceptable pause 3 s, SBR stable-after "
    "20 s): about 45 s from crash to removal, 25 s tuned; no same-run baseline"
)


#: Node processes run from compiled bytecode, as an installed package does (pip compiles it),
#: even when this shell sets PYTHONDONTWRITEBYTECODE; the cache lives outside the tree and is
#: filled once before anything is timed.
PYCACHE = Path(tempfile.gettempdir()) / "casty-benchmark-pycache"


def node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


async def warm_bytecode() -> None:
    warm = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import casty.cluster.node", env=node_env()
    )
    await warm.wait()


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


# -- node processes ----------------------------------------------------------------------------


class NodeProcess:
    """``python -m casty.cluster.node`` with its JSON lines collected."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.lines: list[dict[str, Any]] = []
        self.process: asyncio.subprocess.Process | None = None
        self.spawned_at = 0.0
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = node_env()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "casty.cluster.node",
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        self.spawned_at = time.time()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            x
            for x in self.lines
            if x["kind"] == kind and all(x.get(k) == v for k, v in match.items())
        ]

    def up_since(self, count: int) -> float | None:
        """When this node first saw ``count`` members up."""
        status: dict[str, str] = {}
        for line in self.lines:
            if "node" in line and line["kind"].startswith("Member"):
                status[line["node"]] = line["status"]
                if sum(1 for s in status.values() if s == "up") >= count:
                    return float(line["t"])
        return None

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.terminate()
            try:
                async with asyncio.timeout(15.0):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await self._reader


async def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.01)


async def spawn_cluster(n: int, name: str) -> tuple[list[NodeProcess], list[str]]:
    ports = free_ports(n)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    seeds = [f"--seed={a}" for a in addresses[:3]]
    nodes = [
        NodeProcess(["--name", name, "--port", str(p), "--node-id", f"p{i}", *seeds])
        for i, p in enumerate(ports)
    ]
    await asyncio.gather(*(node.start() for node in nodes))
    return nodes, addresses


async def formation_processes(n: int) -> None:
    nodes, _ = await spawn_cluster(n, f"form{n}")
    try:
        await poll(lambda: all(x.up_since(n) is not None for x in nodes), 60.0, f"{n} up")
        all_up = max(x.up_since(n) or 0.0 for x in nodes)
        last_spawn = max(x.spawned_at for x in nodes)
        first_spawn = min(x.spawned_at for x in nodes)
        last_bound = max(x.of("started")[0]["t"] for x in nodes)
        ours = all_up - last_spawn
        emit(
            {
                "figure": "formation_s",
                "n": n,
                "mode": "processes",
                "ours": round(ours, 3),
                "from_first_spawn_s": round(all_up - first_spawn, 3),
                "from_last_bound_s": round(all_up - last_bound, 3),
                "baseline": 3.0,
                "baseline_source": "issue target: 10 nodes all up within 3 s of the last "
                "start (Akka documents no formation time; no same-run baseline)",
                "ratio": round(3.0 / ours, 2) if ours > 0 else None,
            }
        )
    finally:
        await asyncio.gather(*(x.stop() for x in nodes))


async def sigkill_once(run: int) -> float:
    """Kill the leader of a fresh 3-process cluster; seconds until every survivor removed it."""
    nodes, addresses = await spawn_cluster(3, f"kill{run}")
    try:
        await poll(lambda: all(x.up_since(3) is not None for x in nodes), 60.0, "3 up")
        await asyncio.sleep(3.0)  # let the detectors learn the heartbeat rhythm
        victim_index = min(range(3), key=lambda i: int(addresses[i].rsplit(":", 1)[1]))
        victim, address = nodes[victim_index], addresses[victim_index]
        survivors = [x for x in nodes if x is not victim]
        killed_at = time.time()
        victim.signal(signal.SIGKILL)
        await poll(
            lambda: all(x.of("MemberRemoved", node=address) for x in survivors), 60.0, "removed"
        )
        removed_at = max(float(x.of("MemberRemoved", node=address)[0]["t"]) for x in survivors)
        return removed_at - killed_at
    finally:
        await asyncio.gather(*(x.stop() for x in nodes))


async def sigkill_runs(runs: int) -> None:
    figures = [await sigkill_once(run) for run in range(runs)]
    median = statistics.median(figures)
    emit(
        {
            "figure": "sigkill_to_removed_s",
            "n": 3,
            "runs": runs,
            "ours": round(median, 3),
            "worst": round(max(figures), 3),
            "all": [round(f, 3) for f in figures],
            "baseline": AKKA_FAILOVER_S,
            "baseline_source": AKKA_SOURCE,
            "ratio": round(AKKA_FAILOVER_S / median, 1),
            "target": 5.0,
        }
    )


async def pause_run(seconds: float) -> None:
    nodes, addresses = await spawn_cluster(3, "pause")
    try:
        await poll(lambda: all(x.up_since(3) is not None for x in nodes), 60.0, "3 up")
        paused, address = nodes[-1], addresses[-1]
        pauses = max(int(seconds // 10), 1)
        started = time.monotonic()
        for _ in range(pauses):
            await asyncio.sleep(9.0)
            paused.signal(signal.SIGSTOP)
            await asyncio.sleep(1.0)
            paused.signal(signal.SIGCONT)
        await asyncio.sleep(3.0)  # a suspicion would show up within this window
        others = [x for x in nodes if x is not paused]
        suspected = sum(len(x.of("UnreachableMember", node=address)) for x in others)
        downed = sum(len(x.of("MemberDowned", node=address)) for x in nodes)
        emit(
            {
                "figure": "pause_false_downings",
                "run_s": round(time.monotonic() - started, 1),
                "pauses_1s": pauses,
                "ours": downed,
                "suspicions": suspected,
                "baseline": 0,
                "baseline_source": "issue target (Akka's defaults also tolerate a 1 s pause)",
                "ratio": None,
            }
        )
    finally:
        await asyncio.gather(*(x.stop() for x in nodes))


# -- one process: 30 nodes, and bytes at rest --------------------------------------------------


class CountingConnection(Connection):
    """Counts the bytes of every frame sent (payload plus the 4-byte length prefix)."""

    def __init__(self, inner: Connection, meter: Meter) -> None:
        self._inner = inner
        self._meter = meter
        self.max_frame_size = inner.max_frame_size

    @property
    def local_address(self) -> Address:
        return self._inner.local_address

    @property
    def remote_address(self) -> Address:
        return self._inner.remote_address

    @property
    def peer_identity(self) -> str | None:
        return self._inner.peer_identity

    def send(self, frame: bytes) -> None:
        self._meter.count(frame)
        self._inner.send(frame)

    async def drain(self) -> None:
        await self._inner.drain()

    async def receive_many(self) -> list[bytes]:
        return await self._inner.receive_many()

    async def receive(self) -> bytes:
        return await self._inner.receive()

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def is_closing(self) -> bool:
        return self._inner.is_closing


class Meter:
    def __init__(self) -> None:
        self.total = 0
        self.gossip = 0

    def count(self, frame: bytes) -> None:
        size = len(frame) + 4
        self.total += size
        if b"Gossip" in frame:
            self.gossip += size


class CountingTransport(Transport):
    """Wraps a transport so that every connection counts what it sends."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.max_frame_size = inner.max_frame_size
        self.meter = Meter()

    @classmethod
    def from_url(cls, url: Any, **options: Any) -> CountingTransport:
        raise NotImplementedError("built directly by the benchmark")

    async def listen(self, address: Address, handler: ConnectionHandler) -> Listener:
        async def counted(conn: Connection) -> None:
            await handler(CountingConnection(conn, self.meter))

        return await self._inner.listen(address, counted)

    async def connect(self, address: Address, timeout: float = 5.0) -> Connection:
        return CountingConnection(await self._inner.connect(address, timeout), self.meter)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def one_process(n: int, window: float, *, formation: bool, rest: bool) -> float | None:
    """Form ``n`` nodes in this process; print the formation time (when asked) and, with
    ``rest``, print and return the membership bytes per second per node at rest."""
    ports = free_ports(n)
    seeds = [("127.0.0.1", p) for p in ports[:3]]
    transports = [CountingTransport(as_transport("tcp://")) for _ in range(n)]
    systems = [
        ClusteredActorSystem(
            "one", port=p, node_id=f"o{i}", seed_nodes=seeds, transport=t, config=ClusterConfig()
        )
        for i, (p, t) in enumerate(zip(ports, transports, strict=True))
    ]
    started = time.monotonic()
    try:
        await asyncio.gather(*(s.__aenter__() for s in systems))
        await asyncio.gather(
            *(s.cluster.wait_until(lambda c: len(c.up_members) == n, 60.0) for s in systems)
        )
        formed = time.monotonic() - started
        if formation:
            emit(
                {
                    "figure": "formation_s",
                    "n": n,
                    "mode": "one process",
                    "ours": round(formed, 3),
                    "baseline": 3.0,
                    "baseline_source": "issue target for 10 nodes (no same-run baseline)",
                    "ratio": round(3.0 / formed, 2),
                }
            )
        if not rest:
            return None
        # At rest: every node has seen the same version.
        await asyncio.gather(
            *(s.cluster.wait_until(lambda c: len(c.state.seen) == n, 30.0) for s in systems)
        )
        await asyncio.sleep(2.0)
        before = [(t.meter.total, t.meter.gossip) for t in transports]
        await asyncio.sleep(window)
        total = sum(t.meter.total - b[0] for t, b in zip(transports, before, strict=True))
        gossip = sum(t.meter.gossip - b[1] for t, b in zip(transports, before, strict=True))
        per_node = total / n / window
        emit(
            {
                "figure": "gossip_bytes_per_s_per_node",
                "n": n,
                "window_s": window,
                "ours": round(per_node),
                "gossip_only": round(gossip / n / window),
                "heartbeats_and_other": round((total - gossip) / n / window),
                "baseline": None,
                "baseline_source": "none: Akka documents no byte figure; the target is linear "
                "growth with N (see the growth line)",
                "ratio": None,
            }
        )
        return per_node
    finally:
        await asyncio.gather(*(s.shutdown(leave=False) for s in systems))


async def main(args: argparse.Namespace) -> None:
    skip = set(args.skip.split(",")) if args.skip else set()
    if not {"processes", "kill", "pause"} <= skip:
        await warm_bytecode()
    if "processes" not in skip:
        for n in (3, 10):
            await formation_processes(n)
    big = args.one_process_n
    measure = "bytes" not in skip
    rates: dict[int, float | None] = {}
    if "one-process" not in skip:
        rates[big] = await one_process(big, args.window, formation=True, rest=measure)
    if measure:
        rates[10] = await one_process(10, args.window, formation=False, rest=True)
        if rates.get(big) is None:
            rates[big] = await one_process(big, args.window, formation=False, rest=True)
        small, large = rates[10], rates[big]
        assert small is not None and large is not None
        growth = large / small
        emit(
            {
                "figure": "gossip_bytes_growth",
                "from_n": 10,
                "to_n": big,
                "ours": round(growth, 2),
                "baseline": big / 10,
                "baseline_source": f"linear growth per node (N grows {big / 10:g}x)",
                "ratio": round(big / 10 / growth, 2),
            }
        )
    if "kill" not in skip:
        await sigkill_runs(args.kill_runs)
    if "pause" not in skip:
        await pause_run(args.pause_run)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-runs", type=int, default=3)
    parser.add_argument("--pause-run", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=10.0, help="seconds of bytes at rest")
    parser.add_argument(
        "--one-process-n", type=int, default=30, help="nodes of the one-process runs"
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to skip")
    asyncio.run(main(parser.parse_args()))
