"""A ClusterClient in its own process, driven by the test over stdin/stdout (JSON lines).

Usage: ``client_proc.py HOST PORT``. It connects, asks every entity of ``IDS`` until the
snapshot names every owner, prints ``{"ready": <its address>}``, waits for a ``go`` line, asks
every entity ``ROUNDS`` times and prints one line per answer, then its statistics, and exits after
one more line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "sharding"), str(ROOT / "tests" / "cluster")]

from sharding_harness import Where, WhereIs  # noqa: E402

from casty import ShardEnvelope  # noqa: E402
from casty.client import ClusterClient  # noqa: E402
from casty.errors import AskTimeout  # noqa: E402
from casty.sharding import shard_id_for  # noqa: E402

IDS = [f"e-{i}" for i in range(24)]
SHARDS = 32
ROUNDS = 5


async def main(host: str, port: int) -> None:
    async with ClusterClient(cluster_host=host, cluster_port=port, system_name="test") as client:
        ref = await client.shard_ref("where", num_shards=SHARDS)

        def owner(entity_id: str) -> str | None:
            snapshot = client.topology
            assert snapshot is not None
            home = snapshot.shard_allocations.get("where", {}).get(shard_id_for(entity_id, SHARDS))
            return str(home) if home is not None else None

        async def where(entity_id: str) -> Where:
            while True:
                try:
                    answer: Where = await client.ask(
                        ref, lambda r: ShardEnvelope(entity_id, WhereIs(r)), timeout=2.0
                    )
                    return answer
                except AskTimeout:
                    continue

        loop = asyncio.get_running_loop()
        end = loop.time() + 20.0
        while not all(owner(e) for e in IDS) and loop.time() < end:
            for entity_id in IDS:
                await where(entity_id)
            await asyncio.sleep(0.05)  # let the next snapshot arrive (not a test assertion)
        print(json.dumps({"ready": str(client.system.node_address)}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        before = client.statistics()
        for _ in range(ROUNDS):
            for entity_id in IDS:
                answer = await where(entity_id)
                print(json.dumps({"id": entity_id, "node": answer.node, "owner": owner(entity_id)}))
        after = client.statistics()
        print(
            json.dumps(
                {
                    "direct": after.direct - before.direct,
                    "via_region": after.via_region - before.via_region,
                    "contact": str(after.contact),
                }
            ),
            flush=True,
        )
        await loop.run_in_executor(None, sys.stdin.readline)  # the test has read its counters


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
