"""The chaos workload in its own process (for netlab, where only processes inside a host may
reach the nodes). Driven over stdin/stdout with JSON lines.

Usage: ``chaos_client.py --host H --contact H:P [--contact ...] --history PATH --final PATH``.
It connects a `ClusterClient`, prints ``{"kind": "members", "up": N, "unreachable": M}`` on
every topology change, runs the workload (`chaos_support.run_workload`, recorded to
``--history``) until a ``stop`` line, then on a ``read`` line reads every counter, writes
``{key: [op ids]}`` to ``--final`` and prints ``{"kind": "done"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chaos_support import read_all, run_workload

from casty.client import ClusterClient
from casty.cluster.member import MemberStatus
from casty.testing.history import HistoryRecorder


def emit(kind: str, **fields: object) -> None:
    print(json.dumps({"kind": kind, **fields}), flush=True)


async def watch(client: ClusterClient) -> None:
    """Print the member counts whenever they change (the test waits on them)."""
    seen: tuple[int, int] | None = None
    while True:
        snapshot = client.topology
        if snapshot is not None:
            up = sum(1 for m in snapshot.members if m.status is MemberStatus.UP)
            counts = (up if len(snapshot.members) == up else -1, len(snapshot.unreachable))
            if counts != seen:
                seen = counts
                emit("members", up=counts[0], unreachable=counts[1])
        await asyncio.sleep(0.1)  # polling the client's latest snapshot


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with ClusterClient(
        contact_points=args.contact, system_name="chaos", host=args.host
    ) as client:
        watcher = asyncio.create_task(watch(client))
        stop = asyncio.Event()
        with HistoryRecorder(args.history) as recorder:
            load = asyncio.create_task(run_workload(client, recorder, stop))
            emit("running")
            while (line := await reader.readline()) and line.strip() != b"stop":
                pass
            stop.set()
            await load
        emit("stopped")
        while (line := await reader.readline()) and line.strip() != b"read":
            pass
        final = await read_all(client)
        await asyncio.to_thread(Path(args.final).write_text, json.dumps(final))
        emit("done")
        watcher.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1", help="this client's address")
    parser.add_argument("--contact", action="append", required=True)
    parser.add_argument("--history", required=True)
    parser.add_argument("--final", required=True)
    asyncio.run(main(parser.parse_args()))
