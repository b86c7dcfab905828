"""Coordination figures: uncontended lock round trips, and ClusterClient sharded asks.

A 3-node cluster runs in this process on loopback TCP (every node calls
``system.distributed()`` and spawns a sharded no-op ``ping`` type, the one of
``benchmarks/client.py``, which measures the client in-process). Two more processes connect
once and stay, and measure with the same code, in alternating rounds (``--runs`` each; the
medians are reported, so load from elsewhere on the machine hits both alike):

- a **member**: a fourth `ClusteredActorSystem` that joins the cluster but hosts nothing
  (it lacks the hosting role, for ``ping`` and for the coordination types: every request
  leaves the process, as the client's do);
- a **client**: a `ClusterClient`, which does not join.

Figures:

- ``{member,client}_lock_acquire_release_p50`` (ms; also cycles/s and p99):
  ``await lock.acquire(); await lock.release()`` in a loop (``--cycles``) on one lock name
  nobody else uses, whose entity runs in the cluster process (two round trips per cycle,
  plus the renewal task started and stopped). The reference a user would reach for instead,
  in the same run: a Redis lock round trip (``SET key token NX PX 10000`` then a Lua-checked
  ``DEL`` by ``EVALSHA``) over a raw asyncio socket to ``redis-server`` on 127.0.0.1:6379
  (skipped with a message when none answers); ratio = Redis p50 / ours (above 1: faster than
  Redis). The issue's target: p50 <= 1 ms.
- ``client_sharded_ask`` (replies/s): 100 asks in flight (``--in-flight``) to the ``ping``
  entities (1,000 ids) for ``--seconds`` after a warm-up, every envelope going straight to
  the owning node; baseline = the member's rate, ratio = client / member. Target: >= 0.9.

Prints one JSON line per figure: ``{"name", "ours", "baseline", "ratio", "unit", ...}``.

Usage: ``python benchmarks/coordination.py [--seconds 3] [--cycles 2000] [--in-flight 100]
[--runs 3] [--quick]`` (``--quick``: 0.5 s, 200 cycles, one run: a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from client import (  # noqa: E402  (benchmarks/client.py)
    IDS,
    Ping,
    drive,
    ping_entity,
    start_cluster,
)

from casty import Behaviors, ShardEnvelope  # noqa: E402
from casty.client import ClusterClient  # noqa: E402
from casty.cluster import ClusteredActorSystem  # noqa: E402
from casty.distributed import Distributed  # noqa: E402
from casty.sharding import shard_id_for, wait_registered  # noqa: E402

SYSTEM = "bench"
SHARDS = 100
HOSTING_ROLE = "worker"  # the cluster process's nodes have it; the measuring member does not
LOCK = "casty-lock"  # the lock type and its shard count (casty.distributed.facade)
LOCK_SHARDS = 64
REDIS = ("127.0.0.1", 6379)
UNLOCK = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``samples`` in seconds, as milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


async def lock_cycles(facade: Distributed, name: str, cycles: int) -> dict[str, float]:
    """``cycles`` sequential acquire+release of lock ``name``: rate and latency."""
    lock = facade.lock(name)
    for _ in range(max(10, cycles // 10)):  # warm-up: connections, caches
        await lock.acquire(timeout=10.0)
        await lock.release()
    samples: list[float] = []
    start = time.perf_counter()
    for _ in range(cycles):
        began = time.perf_counter()
        await lock.acquire(timeout=10.0)
        await lock.release()
        samples.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    p50, p99 = percentiles(samples)
    return {"rate": cycles / elapsed, "p50_ms": p50, "p99_ms": p99}


def placed_lock_name(owners: dict[int, Any]) -> str:
    """A lock name whose shard is allocated (to a node of the cluster process)."""
    for i in range(LOCK_SHARDS * 4):
        name = f"bench-lock-{i}"
        if shard_id_for(name, LOCK_SHARDS) in owners:
            return name
    raise RuntimeError("no allocated lock shard")


# -- the measuring processes ---------------------------------------------------------------


async def measure(
    role: str, host: str, port: int, lock_name: str, args: argparse.Namespace
) -> None:
    """Child process: connect as a ``role`` ("member" or "client"), print ``ready``, then run
    each command read from stdin (``lock``, ``ask``; ``exit``) and print its figures."""
    if role == "member":
        system = ClusteredActorSystem(SYSTEM, node_id="measuring", seed_nodes=[f"{host}:{port}"])
        await system.__aenter__()
        try:
            while len(system.cluster.up_members) < 4:
                await asyncio.sleep(0.05)
            region = system.spawn(
                Behaviors.sharded(ping_entity, num_shards=SHARDS, roles=[HOSTING_ROLE]), "ping"
            )
            await wait_registered(system, region)

            async def ping(entity_id: str) -> Any:
                return await system.ask(
                    region, lambda r: ShardEnvelope(entity_id, Ping(r)), timeout=10.0
                )

            # Hosts no coordination entity either: every lock request leaves the process.
            await serve(system.distributed(roles=[HOSTING_ROLE]), ping, lock_name, args)
        finally:
            await system.shutdown()
        return
    async with ClusterClient(cluster_host=host, cluster_port=port, system_name=SYSTEM) as client:
        ref = await client.shard_ref("ping", num_shards=SHARDS)

        async def via_client(entity_id: str) -> Any:
            return await client.ask(ref, lambda r: ShardEnvelope(entity_id, Ping(r)), timeout=10.0)

        await serve(client.distributed(), via_client, lock_name, args)


async def serve(facade: Distributed, ping: Any, lock_name: str, args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    while (command := (await loop.run_in_executor(None, sys.stdin.readline)).strip()) != "exit":
        if command == "lock":
            result: Any = await lock_cycles(facade, lock_name, args.cycles)
        elif command == "ask":
            result = await drive(ping, args.seconds, args.in_flight)
        else:
            break  # stdin closed: the parent is gone
        print(json.dumps({"result": result}), flush=True)


# -- the Redis reference ---------------------------------------------------------------------


async def redis_command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *args: str
) -> bytes:
    """Send one RESP command; return its reply line, or a bulk string's body."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    writer.write(b"".join(parts))
    line = await reader.readline()
    if line.startswith(b"$") and line != b"$-1\r\n":
        return (await reader.readline()).rstrip(b"\r\n")
    return line


async def redis_lock(cycles: int) -> dict[str, float] | str:
    """Sequential Redis lock round trips, or the reason they were skipped."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*REDIS), 2.0)
    except (OSError, TimeoutError) as exc:
        return f"no redis-server on {REDIS[0]}:{REDIS[1]} ({exc})"
    try:
        sha1 = (await redis_command(reader, writer, "SCRIPT", "LOAD", UNLOCK)).decode()
        if len(sha1) != 40:
            return f"redis refused SCRIPT LOAD: {sha1.strip()}"
        key = f"casty-bench-lock-{uuid.uuid4().hex}"

        async def cycle() -> None:
            token = uuid.uuid4().hex
            ok = await redis_command(reader, writer, "SET", key, token, "NX", "PX", "10000")
            assert ok == b"+OK\r\n", ok
            gone = await redis_command(reader, writer, "EVALSHA", sha1, "1", key, token)
            assert gone == b":1\r\n", gone

        for _ in range(max(10, cycles // 10)):
            await cycle()
        samples: list[float] = []
        start = time.perf_counter()
        for _ in range(cycles):
            began = time.perf_counter()
            await cycle()
            samples.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - start
    finally:
        writer.close()
    p50, p99 = percentiles(samples)
    return {"rate": cycles / elapsed, "p50_ms": p50, "p99_ms": p99}


# -- the cluster process ---------------------------------------------------------------------


class Child:
    """A measuring process (``--child member|client``), driven over stdin/stdout."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, at: Any, lock_name: str, args: argparse.Namespace) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "coordination.py"),
            "--child",
            self.role,
            "--contact",
            f"{at.host}:{at.port}",
            "--lock-name",
            lock_name,
            "--seconds",
            str(args.seconds),
            "--cycles",
            str(args.cycles),
            "--in-flight",
            str(args.in_flight),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        await self._read(60.0)

    async def run(self, command: str, timeout: float) -> Any:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())
        await self.process.stdin.drain()
        return (await self._read(timeout))["result"]

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the {self.role} process ended (exit {self.process.returncode})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        try:
            assert process.stdin is not None
            process.stdin.write(b"exit\n")
            await process.stdin.drain()
            await asyncio.wait_for(process.wait(), 20.0)
        except (OSError, TimeoutError):
            pass
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


async def main(args: argparse.Namespace) -> None:
    nodes = await start_cluster(roles=[HOSTING_ROLE])
    first = nodes[0]
    try:
        regions = []
        for n in nodes:
            n.distributed(roles=[HOSTING_ROLE])
            regions.append(
                n.spawn(
                    Behaviors.sharded(ping_entity, num_shards=SHARDS, roles=[HOSTING_ROLE]),
                    "ping",
                )
            )
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n, region)
        # Allocate every entity's shard (pings) and every lock shard (one cycle per name),
        # so the measuring processes find their owners in the topology from the start.
        await asyncio.gather(
            *(
                first.ask(regions[0], lambda r, e=e: ShardEnvelope(e, Ping(r)), timeout=10.0)
                for e in IDS
            )
        )
        facade = first.distributed()
        for i in range(LOCK_SHARDS * 4):
            async with facade.lock(f"bench-lock-{i}"):
                pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while not (owners := dict(first.cluster.snapshot.shard_allocations.get(LOCK, {}))):
            if loop.time() > deadline:
                raise RuntimeError("the topology names no lock shard owner")
            await asyncio.sleep(0.05)
        lock_name = placed_lock_name(owners)
        # The client first: a member leaving the cluster afterwards keeps the cluster process
        # busy for a while, which would slow whatever is measured next.
        children = [Child("client"), Child("member")]
        figures: dict[str, dict[str, list[Any]]] = {
            c.role: {"lock": [], "ask": []} for c in children
        }
        try:
            for child in children:
                await child.start(first.node_address, lock_name, args)
            # Rounds alternate between the two processes, so that load from elsewhere on the
            # machine hits both alike; the medians are reported.
            for command, timeout in (("lock", 120.0), ("ask", 60.0 + 3 * args.seconds)):
                for _ in range(args.runs):
                    for child in children:
                        figures[child.role][command].append(await child.run(command, timeout))
        finally:
            await asyncio.gather(*(child.stop() for child in children))
        reference = await redis_lock(args.cycles)
        if isinstance(reference, str):
            print(json.dumps({"skipped": "redis_lock", "reason": reference}), flush=True)
        for role in ("member", "client"):
            runs = figures[role]["lock"]
            p50 = statistics.median(r["p50_ms"] for r in runs)
            line: dict[str, Any] = {
                "name": f"{role}_lock_acquire_release_p50",
                "ours": round(p50, 3),
                "baseline": None,
                "ratio": None,
                "unit": "ms",
                "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
                "cycles_per_s": round(statistics.median(r["rate"] for r in runs)),
                "runs": len(runs),
                "target_p50_ms": 1.0,
            }
            if isinstance(reference, dict):
                line["baseline"] = round(reference["p50_ms"], 3)
                line["ratio"] = round(reference["p50_ms"] / p50, 3)
                line["baseline_source"] = "redis SET NX PX + EVALSHA unlock, raw socket"
                line["baseline_cycles_per_s"] = round(reference["rate"])
            emit(line)
        client_rate = statistics.median(figures["client"]["ask"])
        member_rate = statistics.median(figures["member"]["ask"])
        emit(
            {
                "name": "client_sharded_ask",
                "ours": round(client_rate),
                "baseline": round(member_rate),
                "ratio": round(client_rate / member_rate, 3),
                "unit": "replies/s",
                "in_flight": args.in_flight,
                "runs": args.runs,
                "client_runs": [round(r) for r in figures["client"]["ask"]],
                "member_runs": [round(r) for r in figures["member"]["ask"]],
                "baseline_source": "the same asks from a member in its own process",
            }
        )
    finally:
        await asyncio.gather(*(n.shutdown(leave=False) for n in nodes))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="rounds per process, alternated")
    parser.add_argument("--quick", action="store_true", help="0.5 s, 200 cycles, 1 run")
    parser.add_argument("--child", choices=["member", "client"], help=argparse.SUPPRESS)
    parser.add_argument("--contact", help=argparse.SUPPRESS)
    parser.add_argument("--lock-name", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.cycles, args.runs = 0.5, 200, 1
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    arguments = parse()
    if arguments.child:
        contact_host, _, contact_port = arguments.contact.rpartition(":")
        asyncio.run(
            measure(
                arguments.child, contact_host, int(contact_port), arguments.lock_name, arguments
            )
        )
    else:
        asyncio.run(main(arguments))
