"""``casty status`` against a real cluster: three demo node processes on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from casty.client import ClusterClient
from casty.client.status import fetch_status
from casty.demo.cluster import DemoCluster, free_ports
from casty.demo.load import TaskLoad
from casty.demo.node import SYSTEM_NAME
from casty.demo.queue import TYPE_NAME
from casty.sharding import shard_id_for
from casty.testing import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 16


async def casty_status(*options: str) -> tuple[int, str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "casty.cli",
        "status",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(30.0):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def shard_counts(document: dict[str, Any]) -> dict[str, int]:
    return {m["node_id"]: m["shards"].get(TYPE_NAME, 0) for m in document["members"]}


async def test_status_shows_members_leader_and_shards_and_follows_a_leave(tmp_path: Path) -> None:
    cluster = DemoCluster(tmp_path, shards=SHARDS)
    try:
        await cluster.start_all()
        contacts = [cluster.address(n) for n in range(cluster.size)]
        async with ClusterClient(contact_points=contacts, system_name=SYSTEM_NAME) as client:
            ref = await client.shard_ref(TYPE_NAME, num_shards=SHARDS)
            load = TaskLoad(client, ref, run_id="status", queues=12, tasks=120)
            await asyncio.wait_for(load.run(), 60.0)
            assert load.acknowledged == 120
        used = {shard_id_for(q.queue_id, SHARDS) for q in load.queues}
        contact = str(cluster.address(0))

        async def status() -> dict[str, Any]:
            return await fetch_status(contact, system_name=SYSTEM_NAME)

        async def all_shards_shown() -> bool:
            return sum(shard_counts(await status()).values()) == len(used)

        await wait_until(all_shards_shown, 20.0, interval=0.2)

        code, out, err = await casty_status(
            "--contact", contact, "--system-name", SYSTEM_NAME, "--json"
        )
        assert code == 0, err
        document = json.loads(out)
        assert document["contact_status"] == "up"
        members = document["members"]
        assert sorted(m["node_id"] for m in members) == ["node-1", "node-2", "node-3"]
        assert {m["address"] for m in members} == {str(a) for a in contacts}
        assert all(m["status"] == "up" and m["reachable"] for m in members)
        assert document["leader"] in {m["address"] for m in members}
        assert sum(shard_counts(document).values()) == len(used)
        assert sum(document["shards"][TYPE_NAME].values()) == len(used)

        code, table, err = await casty_status("--contact", contact, "--system-name", SYSTEM_NAME)
        assert code == 0, err
        print(table)
        for m in members:
            row = next(line for line in table.splitlines() if line.startswith(m["address"]))
            assert m["node_id"] in row and " up " in row and " yes " in row
            assert f"{TYPE_NAME}={m['shards'][TYPE_NAME]}" in row
        assert f"leader: {document['leader']}" in table

        # node-3 leaves (SIGTERM): the status drops it; once every queue was used again, all
        # the shards are on the two others.
        assert await cluster.stop(2) == 0
        async with ClusterClient(contact_points=contacts[:2], system_name=SYSTEM_NAME) as client:
            ref = await client.shard_ref(TYPE_NAME, num_shards=SHARDS)
            # The same queues and tasks, and as many new ones: the handed-off queues kept
            # their state (the first 120 are acknowledged again, not stored twice).
            again = TaskLoad(client, ref, run_id="status", queues=12, tasks=240)
            await asyncio.wait_for(again.run(), 60.0)
            verdict = await again.read_back()
            assert (verdict.acknowledged, verdict.completed) == (240, 240)
            assert verdict.ok, verdict

        async def node_3_gone() -> bool:
            after = await status()
            names = sorted(m["node_id"] for m in after["members"])
            counts = shard_counts(after)
            return names == ["node-1", "node-2"] and sum(counts.values()) == len(used)

        await wait_until(node_3_gone, 30.0, interval=0.2)
    finally:
        await cluster.close()


async def test_status_of_a_node_still_joining_says_it_is_not_a_member_and_fails(
    tmp_path: Path,
) -> None:
    port, nobody = free_ports(2)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    log = tmp_path / "node.log"
    with log.open("wb") as sink:  # its only seed does not answer: it keeps joining
        node = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "casty",
            "node",
            "--port",
            str(port),
            "--seed",
            f"127.0.0.1:{nobody}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
            env=env,
        )
    try:
        await wait_until(lambda: " listening " in log.read_text(errors="replace"), 30.0)
        contact = f"127.0.0.1:{port}"
        code, out, err = await casty_status("--contact", contact, "--timeout", "5")
        assert code == 1, (out, err)
        assert out == ""  # no empty table, no "leader: none"
        assert (
            err.strip()
            .splitlines()[-1]
            .startswith(f"casty: error: {contact} is not a member yet: it is still joining")
        ), err
        code, out, err = await casty_status("--contact", contact, "--json")
        assert code == 1
        document = json.loads(out)
        assert document["members"] == [] and document["contact_status"] is None
        assert "not a member yet" in err
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()


async def test_status_of_an_address_where_no_member_answers_fails_with_the_reason() -> None:
    (port,) = free_ports(1)
    code, out, err = await casty_status("--contact", f"127.0.0.1:{port}", "--timeout", "0.5")
    assert code == 1
    assert out == ""
    assert "casty: error:" in err and "127.0.0.1" in err and "'casty'" in err
    # One line: the client's own warnings would repeat the reason the error line gives.
    assert err.count("\n") == 1, err
