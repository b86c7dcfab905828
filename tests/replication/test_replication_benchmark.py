"""``benchmarks/replication.py --quick`` runs end to end and prints its figures."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "replication.py"


async def test_the_quick_run_prints_every_figure() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCHMARK), "--quick", stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 150.0)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    figures = {f["name"]: f for f in map(json.loads, out.decode().splitlines())}
    assert set(figures) == {
        "replicated_commands_r0",
        "replicated_commands_r1",
        "replicated_commands_r2",
        "failover_after_kill",
    }
    r0 = figures["replicated_commands_r0"]["ours"]
    for r in (1, 2):
        figure = figures[f"replicated_commands_r{r}"]
        assert figure["ours"] > 0 and figure["baseline"] == r0
        assert figure["ratio"] == round(figure["ours"] / r0, 2)
    # Every probed entity was served again by its promoted replica (not infinity).
    failover = figures["failover_after_kill"]
    assert failover["probes"] == 3 and math.isfinite(failover["max"])
