"""The top-level API is locked: a change to `casty.__all__` is a deliberate edit here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import casty
import casty.errors

EXPECTED = {
    "ActorContext", "ActorRef", "ActorSystem", "Address", "Backoff", "Behavior", "Behaviors",
    "ClusterClient", "ClusterDomainEvent", "ClusteredActorSystem", "DeadLetter", "Discovery",
    "EventStreamPublish", "EventStreamSubscribe", "EventStreamUnsubscribe", "InMemoryJournal",
    "Journal", "LeaderChanged", "Member", "MemberEvent", "MemberLeft", "MemberRemoved",
    "MemberStatus", "MemberUp", "PostStop", "PreRestart", "ReachableMember", "Serializer",
    "ShardEnvelope", "StashBuffer", "SubscribeTopology", "SupervisorStrategy", "Terminated",
    "TimerScheduler", "TopologySnapshot", "Transport", "UnreachableMember", "__version__",
    "as_discovery", "as_journal", "as_serializer", "as_transport",
}  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_locked() -> None:
    assert set(casty.__all__) == EXPECTED | set(casty.errors.__all__)
    assert len(casty.__all__) == len(set(casty.__all__))


def test_every_exported_name_exists() -> None:
    missing = [name for name in casty.__all__ if not hasattr(casty, name)]
    assert missing == []


def test_every_error_derives_from_casty_error() -> None:
    for name in casty.errors.__all__:
        assert issubclass(getattr(casty.errors, name), casty.errors.CastyError), name


def test_error_tree_docstring_names_every_error() -> None:
    doc = casty.errors.__doc__ or ""
    for name in casty.errors.__all__:
        assert re.search(rf"\b{name}\b", doc), f"{name} is not drawn in casty.errors' docstring"


def test_readme_quickstart_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## Quickstart.*?```python\n(.*?)```", readme, re.S)
    assert code is not None
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "5"
