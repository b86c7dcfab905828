"""Public test helpers: one contract suite per plug-in protocol, clocks, fakes, waits, and a
history checker for chaos tests (`check_history`).

A plug-in's own tests run the shipped suite by subclassing it once::

    import pytest
    from casty.testing import JournalContract

    class TestMyJournal(JournalContract):
        @pytest.fixture
        def journal_factory(self, tmp_path):
            return lambda: MyJournal(tmp_path / "j.db")

Names are imported lazily, so ``import casty.testing`` needs neither pytest nor hypothesis until a
suite is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DiscoveryContract",
    "FakeNetwork",
    "HistoryRecorder",
    "HistoryReport",
    "JournalContract",
    "ManualClock",
    "SerializerCapabilities",
    "SerializerContract",
    "TransportCapabilities",
    "TransportContract",
    "check_history",
    "free_ports",
    "read_history",
    "wait_until",
]

_LAZY = {
    "JournalContract": "casty.testing.journal_contract",
    "TransportContract": "casty.testing.transport_contract",
    "TransportCapabilities": "casty.testing.transport_contract",
    "FakeNetwork": "casty.testing.network",
    "SerializerContract": "casty.testing.serializer_contract",
    "SerializerCapabilities": "casty.testing.serializer_contract",
    "DiscoveryContract": "casty.testing.discovery_contract",
    "ManualClock": "casty.testing.clock",
    "wait_until": "casty.testing.wait",
    "HistoryRecorder": "casty.testing.history",
    "HistoryReport": "casty.testing.history",
    "check_history": "casty.testing.history",
    "read_history": "casty.testing.history",
    "free_ports": "casty.testing.ports",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
