"""A cluster node hosting the replicated ``counters`` type (`chaos_domain.counter`) over its own
SQLite file, for the chaos tests and nothing else. Prints ``{"kind": "up", ...}`` once its region
is registered; runs until killed or until its stdin closes.

Usage: ``python chaos_node.py --host H --port P --seed H:P [--seed ...] --db PATH``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chaos_domain import NUM_SHARDS, TYPE_NAME, counter
from cluster_procs import report_up_until_stdin_closes

from casty import Behaviors
from casty.cluster import ClusteredActorSystem
from casty.journals import SQLiteJournal
from casty.replication import ReplicationConfig
from casty.sharding import wait_registered


async def main(args: argparse.Namespace) -> None:
    # Sharding's and replication's decisions (promotions, re-allocations, replaced entries)
    # on stderr, to explain a failed run.
    logging.basicConfig(format="%(created).3f %(levelname)s %(name)s: %(message)s")
    logging.getLogger("casty.sharding").setLevel(logging.INFO)
    logging.getLogger("casty.replication").setLevel(logging.INFO)
    journal = SQLiteJournal(args.db, synchronous="NORMAL")
    system = ClusteredActorSystem(
        "chaos", host=args.host, port=args.port, node_id=args.node_id, seed_nodes=args.seed
    )
    config = ReplicationConfig(
        replicas=args.replicas, min_acks=args.min_acks, ack_timeout=args.ack_timeout
    )
    async with journal, system:
        region = system.spawn(
            Behaviors.sharded(
                counter(journal), num_shards=NUM_SHARDS, replication=config, journal=journal
            ),
            TYPE_NAME,
        )
        await wait_registered(system, region)
        await report_up_until_stdin_closes(system)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", action="append", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--node-id", default=None)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--min-acks", type=int, default=1)
    parser.add_argument("--ack-timeout", type=float, default=2.0)
    asyncio.run(main(parser.parse_args()))
