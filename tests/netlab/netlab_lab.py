"""`Lab`: drives ``netlab`` (kept out of conftest so tests can import it by name)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class Lab:
    """A running lab of ``hosts`` hosts h1..hN at 10.77.0.1..N (or ``$NETLAB_NET``)."""

    def __init__(self, netlab: Path, hosts: int) -> None:
        self.netlab = netlab
        self.hosts = [f"h{i}" for i in range(1, hosts + 1)]
        net = os.environ.get("NETLAB_NET", "10.77.0")
        self.ip = {h: f"{net}.{i}" for i, h in enumerate(self.hosts, start=1)}

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.netlab), *args], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise AssertionError(f"netlab {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def exec_prefix(self, host: str) -> list[str]:
        return [str(self.netlab), "exec", host]
