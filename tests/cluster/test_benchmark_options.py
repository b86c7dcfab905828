"""``benchmarks/cluster.py`` prints exactly the figures it was asked for."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "cluster.py"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cluster_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
async def test_skipping_bytes_prints_no_bytes_line(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark()
    args = argparse.Namespace(
        skip="processes,bytes,kill,pause", one_process_n=4, window=0.1, kill_runs=1, pause_run=1
    )
    await bench.main(args)
    figures = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(f["figure"], f["n"], f["mode"]) for f in figures] == [
        ("formation_s", 4, "one process")
    ]
