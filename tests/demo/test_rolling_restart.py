"""Rolling restart under the demo's load: each of three node processes is SIGTERMed (it leaves
gracefully, handing its shards off) and started again on the same port and SQLite file, while a
`ClusterClient` keeps submitting tasks.

Checked: no acknowledged task lost or duplicated (the queues are read back), and no queue went
more than 2 s without an acknowledgement (every queue has tasks in flight the whole time, so
the longest gap between two acks of one queue is the longest time its shard was unserved, as
a client with a 1 s resend sees it). The figures of each restart are printed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from casty.client import ClusterClient
from casty.demo.cluster import DemoCluster
from casty.demo.load import TaskLoad
from casty.demo.node import SYSTEM_NAME
from casty.demo.queue import TYPE_NAME
from casty.testing import wait_until

pytestmark = pytest.mark.slow

SHARDS = 32
QUEUES = 32
UNSERVED_BOUND = 2.0  # seconds (issue 9, item 6)


async def test_a_rolling_restart_loses_nothing_and_leaves_no_shard_unserved_for_2_s(
    tmp_path: Path,
) -> None:
    cluster = DemoCluster(tmp_path, shards=SHARDS)
    loop = asyncio.get_running_loop()
    try:
        await cluster.start_all()
        contacts = [cluster.address(n) for n in range(cluster.size)]
        async with ClusterClient(contact_points=contacts, system_name=SYSTEM_NAME) as client:
            ref = await client.shard_ref(TYPE_NAME, num_shards=SHARDS)
            load = TaskLoad(
                client,
                ref,
                run_id="rolling",
                queues=QUEUES,
                window=2,
                rate=300.0,
                ask_timeout=1.0,
            )
            runner = asyncio.create_task(load.run())
            try:
                await wait_until(lambda: load.acknowledged >= 300, 30.0)
                start = loop.time()
                restarts = []
                for n in range(cluster.size):
                    began = loop.time()
                    status = await cluster.stop(n)
                    stopped = loop.time()
                    await cluster.start(n)
                    up = loop.time()
                    assert status == 0, f"{cluster.node_id(n)} exited {status} on SIGTERM"
                    mark = load.acknowledged
                    # Served with the restarted node back before the next one goes.
                    await wait_until(lambda mark=mark: load.acknowledged >= mark + 300, 30.0)
                    restarts.append((n, began, stopped, up))
                end = loop.time()
                load.stop()
                await asyncio.wait_for(runner, 60.0)
            finally:
                runner.cancel()
            verdict = await load.read_back()
        gap, queue = load.longest_gap(start, end)
        figures = []
        for i, (n, began, stopped, up) in enumerate(restarts):
            until = restarts[i + 1][1] if i + 1 < len(restarts) else end
            node_gap, node_queue = load.longest_gap(began, until)
            figures.append(
                {
                    "node": cluster.node_id(n),
                    "leave_s": round(stopped - began, 2),
                    "start_s": round(up - stopped, 2),
                    "longest_gap_s": round(node_gap, 3),
                    "queue": node_queue,
                }
            )
        print(
            json.dumps(
                {
                    "restarts": figures,
                    "longest_gap_s": round(gap, 3),
                    "queue": queue,
                    "acknowledged": load.acknowledged,
                    "resent": load.resent,
                    "resend_reasons": dict(load.resend_reasons),
                    "verdict": str(verdict),
                }
            )
        )
        assert not load.stalled
        assert verdict.lost == 0 and verdict.duplicated == 0, verdict
        assert verdict.ok and verdict.completed >= verdict.acknowledged, verdict
        assert gap <= UNSERVED_BOUND, f"{queue} went {gap:.2f} s without an ack: {figures}"
    finally:
        await cluster.close()
