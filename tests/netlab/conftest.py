"""The network-namespace lab (``../shared/netlab``): locate it, bring hosts up, tear them down.

Tests here are marked ``netlab``; they skip with a reason when the lab cannot run (not root,
no iptables, no netlab script). They never connect to the lab's addresses from outside a host:
node processes run inside the hosts (``netlab exec``) and report through their stdout.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))  # the node-process helpers

from netlab_lab import Lab  # noqa: E402 - after the path is set


def netlab_path() -> Path | None:
    """``$CASTY_NETLAB``, else ``../shared/netlab`` next to the repository."""
    configured = os.environ.get("CASTY_NETLAB")
    candidate = Path(configured) if configured else ROOT.parent / "shared" / "netlab"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


@pytest.fixture(scope="session")
def netlab() -> Path:
    path = netlab_path()
    if path is None:
        pytest.skip("netlab not found (../shared/netlab or $CASTY_NETLAB)")
    if os.geteuid() != 0:
        pytest.skip("netlab needs root (network namespaces, iptables)")
    if shutil.which("iptables") is None or shutil.which("ip") is None:
        pytest.skip("netlab needs iptables and iproute2")
    return path


@pytest.fixture
def lab5(netlab: Path) -> Iterator[Lab]:
    lab = Lab(netlab, 5)
    lab.run("up", "5")
    try:
        yield lab
    finally:
        lab.run("down")
