"""A node process starts quickly: importing it loads only what a node uses."""

from __future__ import annotations

import subprocess
import sys

import pytest

import casty
from casty.discovery import registry
from casty.errors import BackendNotFound
from casty.sharding.messages import ShardEnvelope

# Entry-point metadata (read only for a URL scheme no built-in backend knows) and sharding
# (built on the cluster, not needed by it).
UNUSED = ("importlib.metadata", "casty.sharding")


@pytest.mark.slow
def test_a_cluster_node_does_not_import_what_it_does_not_use() -> None:
    code = (
        "import sys, casty.cluster.node\n"
        f"print(' '.join(sorted(m for m in sys.modules if m.startswith({UNUSED!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == []


def test_the_names_imported_on_first_use_still_resolve() -> None:
    assert casty.ShardEnvelope is ShardEnvelope
    assert "ShardEnvelope" in dir(casty)
    with pytest.raises(AttributeError):
        _ = casty.NoSuchName  # type: ignore[attr-defined]
    with pytest.raises(BackendNotFound, match=r"entry-point group 'casty\.discovery'"):
        registry.load("no-such-scheme")  # the entry points are read, lazily
