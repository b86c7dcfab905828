"""The network-namespace lab (``../shared/netlab``): locate it, bring hosts up, tear them down.

Tests here are marked ``netlab``; they skip with a reason when the lab cannot run (not root,
no iptables, no netlab script). They never connect to the lab's addresses from outside a host:
node processes run inside the hosts (``netlab exec``) and report through their stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))  # the node-process helpers

from netlab_lab import Lab, lab_up, netlab_path, why_no_netlab  # noqa: E402 - after the path is set


@pytest.fixture(scope="session")
def netlab() -> Path:
    reason = why_no_netlab()
    if reason is not None:
        pytest.skip(reason)
    path = netlab_path()
    assert path is not None
    return path


@pytest.fixture
def lab5(netlab: Path) -> Iterator[Lab]:
    with lab_up(netlab, 5) as lab:
        yield lab
