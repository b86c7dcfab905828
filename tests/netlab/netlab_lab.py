"""`Lab`: drives ``netlab`` (kept out of conftest so tests can import it by name)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def netlab_path() -> Path | None:
    """``$CASTY_NETLAB``, else ``../shared/netlab`` next to the repository."""
    configured = os.environ.get("CASTY_NETLAB")
    candidate = Path(configured) if configured else ROOT.parent / "shared" / "netlab"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def why_no_netlab() -> str | None:
    """Why the lab cannot run here (a skip reason), or None when it can."""
    if netlab_path() is None:
        return "netlab not found (../shared/netlab or $CASTY_NETLAB)"
    if os.geteuid() != 0:
        return "netlab needs root (network namespaces, iptables)"
    if shutil.which("iptables") is None or shutil.which("ip") is None:
        return "netlab needs iptables and iproute2"
    return None


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


@contextlib.contextmanager
def lab_up(netlab: Path, hosts: int) -> Iterator[Lab]:
    """A lab of ``hosts`` hosts, up for the ``with`` block and down after it."""
    lab = Lab(netlab, hosts)
    lab.run("up", str(hosts))
    try:
        yield lab
    finally:
        lab.run("down")
