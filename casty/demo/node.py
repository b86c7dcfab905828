"""One node process of the demo: a cluster member hosting the replicated ``tasks`` type.

``python -m casty.demo.node --port P --seeds H:P,H:P,H:P --journal URL [--node-id ID]
[--shards N] [--quorum N]`` joins (or founds) the cluster, spawns the task-queue region with
``ReplicationConfig(replicas=1, min_acks=1)`` over its journal, waits until the shard
coordinator registered that region, prints one JSON line ``{"up": "host:port"}`` and runs
until SIGTERM, SIGINT or the end of its stdin; then it leaves the cluster gracefully (its
shards are handed off first) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from casty.actors.behaviors import Behaviors
from casty.cluster import ClusteredActorSystem
from casty.demo.queue import TYPE_NAME, task_queue
from casty.journals import as_journal
from casty.replication import ReplicationConfig
from casty.sharding import wait_registered

__all__ = ["REPLICATION", "SYSTEM_NAME", "main", "run"]

SYSTEM_NAME = "casty-demo"
REPLICATION = ReplicationConfig(replicas=1, min_acks=1)


async def _until_stopped() -> None:
    """Return on SIGTERM, SIGINT or end of stdin (the parent died or closed it)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def stdin_closed() -> None:
        while await reader.readline():
            pass
        stop.set()

    watcher = asyncio.create_task(stdin_closed())
    try:
        await stop.wait()
    finally:
        watcher.cancel()


async def run(args: argparse.Namespace) -> None:
    """Run one node with the parsed ``args`` until it is told to stop (see the module)."""
    journal = as_journal(args.journal)
    system = ClusteredActorSystem(
        SYSTEM_NAME,
        host=args.host,
        port=args.port,
        node_id=args.node_id,
        seed_nodes=[s for s in args.seeds.split(",") if s],
        required_quorum=args.quorum,
    )
    async with journal, system:
        region = Behaviors.sharded(
            task_queue(journal),
            num_shards=args.shards,
            replication=REPLICATION,
            journal=journal,
        )
        # Up once the coordinator knows this region: when every node said so, a shard gets
        # its replica on another node from its first write.
        await wait_registered(system, system.spawn(region, TYPE_NAME), timeout=30.0)
        print(json.dumps({"up": f"{args.host}:{args.port}"}), flush=True)
        await _until_stopped()
    # Leaving the block left the cluster: shards handed off, then actors and transport stopped.


def main(argv: list[str] | None = None) -> int:
    """The node's command line (``argv`` default ``sys.argv[1:]``); returns 0 once it left."""
    parser = argparse.ArgumentParser(prog="python -m casty.demo.node")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seeds", required=True, help="host:port,host:port,...")
    parser.add_argument("--journal", required=True, help="journal URL")
    parser.add_argument("--node-id", default=None)
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--quorum", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {args.node_id} %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
