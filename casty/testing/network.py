"""`FakeNetwork`: the in-process network cluster tests run on.

It is `casty.transports.memory.MemoryNetwork` under the name tests use: nodes get transports
from it and the test cuts, delays, drops and severs links between them on command::

    network = FakeNetwork(seed=7)
    a, b = network.transport("node-a"), network.transport("node-b")
    ...
    network.partition("node-a", "node-b")          # both ways; oneway=True for one
    network.heal()
"""

from __future__ import annotations

from casty.transports.memory import MemoryNetwork

__all__ = ["FakeNetwork"]

FakeNetwork = MemoryNetwork
