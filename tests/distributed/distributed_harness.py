"""Helpers of the coordination tests: clusters from the sharding harness, entity placement."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests" / "sharding") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "sharding"))

from sharding_harness import Node, start_cluster, stop_all, wait_until  # noqa: E402

from casty.distributed.facade import NUM_SHARDS  # noqa: E402
from casty.sharding import shard_id_for  # noqa: E402

__all__ = ["Node", "host_of", "start_cluster", "started", "stop_all", "wait_until"]


async def started(count: int) -> list[Node]:
    """A cluster of ``count`` nodes, each with the coordination types spawned."""
    nodes = await start_cluster(count)
    for n in nodes:
        n.system.distributed()
    return nodes


def host_of(nodes: list[Node], type_name: str, entity_id: str) -> Node | None:
    """The node that hosts ``entity_id``'s shard, as the first node's topology says."""
    allocations = nodes[0].system.cluster.snapshot.shard_allocations.get(type_name, {})
    home = allocations.get(shard_id_for(entity_id, NUM_SHARDS))
    if home is None:
        return None
    return next((n for n in nodes if str(home) in n.system.address), None)
