"""``casty demo`` as a user runs it: a subprocess, three node processes, one of them killed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from casty.abc import Address
from casty.demo.cluster import free_ports
from casty.demo.console import ClientLogs
from casty.testing._postgres import drop_journal_tables, require_postgres_dsn

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def demo_env(tmp: Path | None = None) -> dict[str, str]:
    """The environment of a demo subprocess; with ``tmp``, its temporary folder goes there."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return env


def run_demo(
    *options: str, timeout: float = 150.0, json_summary: bool = True, tmp: Path | None = None
) -> tuple[int, dict[str, Any], str]:
    json_flag = ["--json"] if json_summary else []
    done = subprocess.run(
        [sys.executable, "-m", "casty.cli", "demo", *json_flag, *options],
        capture_output=True,
        text=True,
        timeout=timeout,  # the demo kills its node processes itself, also when it fails
        env=demo_env(tmp),
    )
    if not json_summary:
        return done.returncode, {"text": done.stdout}, done.stderr
    summary = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, summary, done.stderr


def processes_naming(text: str) -> list[int]:
    """The pids of the processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    pids.append(int(entry.name))
    return pids


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


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
    assert killed["at_acknowledged"] == 800  # right at 40 %, as documented
    assert killed["kill_to_serving_s"] is not None  # every queue acknowledged again after it
    # The client's warnings about the node killed on purpose stay in client.log.
    assert killed["address"] not in stderr, stderr
    assert "workdir" not in summary  # the temporary folder was removed
    print(json.dumps(summary))


def test_a_one_task_demo_reports_in_the_singular_and_says_why_no_failover_was_timed(
    tmp_path: Path,
) -> None:
    status, output, stderr = run_demo("--tasks", "1", json_summary=False, tmp=tmp_path)
    text = output["text"]
    assert status == 0, stderr[-3000:]
    assert "submitting 1 task through" in stderr
    assert "acknowledged  1 of 1 task\n" in text
    # The kill came with the only ack: nothing was left to time, which is not "never".
    kill = next(line for line in text.splitlines() if line.startswith("kill"))
    assert "SIGKILLed at 1 acknowledged" in kill
    assert "no task was left to submit after it" in kill and "never" not in kill
    assert "result        OK" in text
    assert list(tmp_path.iterdir()) == []  # the temporary folder was removed


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
async def test_a_signal_stops_the_demo_quietly_and_cleans_up(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "casty.cli",
        "demo",
        "--tasks",
        "100000",  # still loading when the signal comes
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=demo_env(tmp_path),
        start_new_session=True,  # a process group of its own, as a shell gives a command
        preexec_fn=lambda: signal.signal(
            signal.SIGINT, signal.SIG_DFL
        ),  # even if pytest's is ignored
    )
    assert process.stderr is not None and process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60.0):  # until the load runs (its first progress line)
            while not any(t.endswith(" acknowledged") for t in seen):
                line = await process.stderr.readline()
                assert line, f"the demo ended early: {seen}"
                seen.append(line.decode().rstrip())
        assert processes_naming(str(tmp_path))  # its node processes run
        if sig == signal.SIGINT:
            os.killpg(process.pid, sig)  # Ctrl-C: the nodes get it too
        else:
            process.send_signal(sig)  # kill PID: only the demo gets it
        async with asyncio.timeout(30.0):
            out, err = await process.communicate()
        stderr = "\n".join(seen) + "\n" + err.decode()
        assert process.returncode == status, stderr
        assert out == b""
        assert stderr.rstrip().splitlines()[-1] == "interrupted", stderr
        assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr
        progress = ("starting ", "cluster up;", "load done;")
        for line in stderr.rstrip().splitlines()[:-1]:  # only progress: no warnings either
            assert line.startswith(progress) or line.endswith(" acknowledged"), stderr
        assert os.listdir(tmp_path) == []  # the temporary folder was removed
        assert processes_naming(str(tmp_path)) == []  # no node process left
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        kill_all(processes_naming(str(tmp_path)))


def test_a_node_that_fails_to_start_is_reported_with_its_own_error(tmp_path: Path) -> None:
    (port,) = free_ports(1)  # no PostgreSQL there
    status, summary, stderr = run_demo(
        "--journal", f"postgresql://postgres@127.0.0.1:{port}/test", timeout=60.0, tmp=tmp_path
    )
    assert status == 1
    assert summary == {}
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("casty: error: node-"), stderr
    assert "before it was up: casty.errors.JournalUnavailable:" in error, error
    assert "did not start within" not in error
    assert processes_naming(str(tmp_path)) == []


def test_demo_refuses_a_journal_the_nodes_cannot_share() -> None:
    status, summary, stderr = run_demo("--journal", "sqlite:///one.db", timeout=30.0)
    assert status == 1
    assert summary == {}
    assert "postgresql://" in stderr


def test_demo_refuses_a_task_count_below_one_as_a_usage_error() -> None:
    status, summary, stderr = run_demo("--tasks", "0", timeout=30.0)
    assert status == 2  # argparse's usage error, like any other bad option
    assert summary == {}
    assert "--tasks: must be >= 1, got 0" in stderr


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


def test_the_demo_keeps_warnings_about_the_node_it_killed_off_stderr_but_not_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = ClientLogs(tmp_path / "client.log")
    log = logging.getLogger("casty.remote")
    try:
        log.warning("before the kill: 127.0.0.1:4123 reset")
        logs.expect_loss_of(Address("127.0.0.1", 4123))
        log.warning("handshake with casty://casty-demo@127.0.0.1:4123 failed: reset by peer")
        log.warning("handshake with casty://casty-demo@127.0.0.1:41234 failed: another node")
        log.error("an error naming 127.0.0.1:4123")
    finally:
        logs.close()
    shown = capsys.readouterr().err
    assert "before the kill" in shown
    assert "reset by peer" not in shown  # the node killed on purpose
    assert "another node" in shown and "an error naming" in shown
    assert "reset by peer" in (tmp_path / "client.log").read_text()  # kept for --keep
