"""`import casty` needs only msgpack: the optional drivers are blocked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {"aiosqlite", "asyncpg", "cryptography", "dns", "prometheus_client"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for this test: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import casty
    import casty.testing
    from casty.errors import BackendNotFound
    from casty.journals import as_journal
    from casty.serializers import as_serializer

    as_serializer("msgpack")
    as_journal("memory://")
    try:
        as_journal("sqlite:///x.db")
    except BackendNotFound as exc:
        assert "pip install 'casty[sqlite]'" in str(exc), exc
    else:
        raise AssertionError("sqlite journal loaded without aiosqlite")
    leaked = BLOCKED & {m.split(".")[0] for m in sys.modules}
    assert not leaked, leaked
    print("ok", len(casty.__all__))
    """
)


def test_import_casty_with_core_dependency_only() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
