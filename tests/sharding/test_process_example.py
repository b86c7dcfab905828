"""``examples/task_queue.py`` runs the spec's task queue on three node processes and exits 0."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "task_queue.py"


async def test_the_task_queue_example_runs_on_three_processes() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(100.0):
        output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    for worker in ("worker-1", "worker-2", "worker-3"):
        assert f"{worker}: queue:emails -> send_welcome(ada@example.org) done" in text
        assert f"{worker}: queue:reports -> generate_pdf(report-2026-11) done" in text
    assert "node exit codes: [0, 0, 0]" in text
