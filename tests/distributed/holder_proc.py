"""A ClusterClient process that takes a lock and holds it until it is killed.

Usage: ``holder_proc.py HOST PORT SYSTEM LOCK TTL``. Prints ``{"token": <fencing token>}``
once granted, then waits forever (renewing the lease) for the test's SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from casty.client import ClusterClient


async def main(host: str, port: int, system: str, name: str, ttl: float) -> None:
    async with ClusterClient(cluster_host=host, cluster_port=port, system_name=system) as client:
        lock = client.distributed().lock(name, ttl=ttl)
        token = await lock.acquire(timeout=30.0)
        print(json.dumps({"token": token}), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])))
