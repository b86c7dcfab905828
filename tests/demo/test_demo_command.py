"""``casty demo`` as a user runs it: a subprocess, three node processes, one of them killed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from casty.testing._postgres import drop_journal_tables, require_postgres_dsn

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def run_demo(*options: str, timeout: float = 150.0) -> tuple[int, dict[str, Any], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "casty.cli", "demo", "--json", *options],
        capture_output=True,
        text=True,
        timeout=timeout,  # the demo kills its node processes itself, also when it fails
        env=env,
    )
    summary = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, summary, done.stderr


def test_the_demo_loses_and_duplicates_nothing_when_a_node_is_killed() -> None:
    status, summary, stderr = run_demo("--tasks", "2000")
    assert status == 0, stderr[-3000:]
    assert summary["ok"] is True
    assert summary["acknowledged"] == 2000
    assert summary["completed"] == 2000  # read back from the queues' state
    assert summary["lost"] == 0
    assert summary["duplicated"] == 0
    assert summary["pending"] == 0 and summary["unread_queues"] == 0
    killed = summary["killed"]
    assert killed is not None and killed["node"] in {"node-1", "node-2", "node-3"}
    assert killed["kill_to_serving_s"] is not None  # every queue acknowledged again after it
    assert "workdir" not in summary  # the temporary folder was removed
    print(json.dumps(summary))


def test_demo_refuses_a_journal_the_nodes_cannot_share() -> None:
    status, summary, stderr = run_demo("--journal", "sqlite:///one.db", timeout=30.0)
    assert status == 1
    assert summary == {}
    assert "postgresql://" in stderr


@pytest.mark.postgres
async def test_the_demo_runs_on_a_shared_postgresql_journal() -> None:
    dsn = require_postgres_dsn()
    table = f"casty_demo_{uuid.uuid4().hex[:8]}"  # a table of its own, dropped afterwards
    url = f"{dsn}{'&' if '?' in dsn else '?'}table={table}"
    try:
        status, summary, stderr = await asyncio.to_thread(
            run_demo, "--tasks", "1000", "--journal", url
        )
    finally:
        await drop_journal_tables(dsn, table)
    assert status == 0, stderr[-3000:]
    assert summary["journal"] == "postgresql, shared"
    assert (summary["acknowledged"], summary["completed"]) == (1000, 1000)
    assert (summary["lost"], summary["duplicated"]) == (0, 0)
    print(json.dumps(summary))
