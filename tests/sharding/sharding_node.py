"""A cluster node hosting the sharded ``logs`` type (`sharding_domain.log_entity`), for the
separate-process tests. Prints ``{"kind": "up", ...}`` once up; runs until killed or until its
stdin closes.

Usage: ``python sharding_node.py --port P --seed HOST:PORT --journal sqlite:///path.db``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster_procs import report_up_until_stdin_closes
from sharding_domain import log_entity

from casty import Behaviors
from casty.cluster import ClusteredActorSystem
from casty.journals import as_journal
from casty.sharding import ShardingSettings


async def main(args: argparse.Namespace) -> None:
    journal = as_journal(args.journal)
    system = ClusteredActorSystem(
        "test", port=args.port, node_id=args.node_id, seed_nodes=[args.seed]
    )
    async with journal, system:
        system.spawn(
            Behaviors.sharded(
                log_entity(journal), num_shards=args.shards, settings=ShardingSettings()
            ),
            "logs",
        )
        await report_up_until_stdin_closes(system)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--node-id", default=None)
    parser.add_argument("--shards", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
