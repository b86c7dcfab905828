"""``benchmarks/coordination.py --quick`` runs end to end and prints its figures."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "coordination.py"


async def test_the_quick_run_prints_every_figure() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCHMARK), "--quick", stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 120.0)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    lines = [json.loads(line) for line in out.decode().splitlines()]
    figures = {line["name"]: line for line in lines if "name" in line}
    assert set(figures) == {
        "member_lock_acquire_release_p50",
        "client_lock_acquire_release_p50",
        "client_sharded_ask",
    }
    assert all(f["ours"] > 0 for f in figures.values())
    # Redis is the lock's reference when a server answers; otherwise a skip line says why.
    redis = figures["client_lock_acquire_release_p50"]["baseline"]
    assert redis is not None or any(line.get("skipped") == "redis_lock" for line in lines)
