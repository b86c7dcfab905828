"""Calm logging: repeated warnings are held back and counted, bare connections included."""

from __future__ import annotations

import asyncio
import logging

import pytest

from casty._calm_log import CalmLog
from casty.cluster import ClusteredActorSystem
from casty.errors import ConfigurationError


def test_a_key_is_logged_once_per_interval_with_the_count_of_what_was_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="casty.test")
    now = [0.0]
    calm = CalmLog(logging.getLogger("casty.test"), lambda: now[0], interval=10.0)
    for t in (0.0, 1.0, 2.0, 9.9):
        now[0] = t
        calm.warning("a", "seed %s is silent", "x")
    calm.warning("b", "another kind")  # keys are independent
    now[0] = 10.0
    calm.warning("a", "seed %s is silent", "y")
    now[0] = 25.0
    calm.warning("a", "seed %s is silent", "z")
    assert [r.getMessage() for r in caplog.records] == [
        "seed x is silent",
        "another kind",
        "seed y is silent (3 similar messages held back)",
        "seed z is silent",
    ]


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_the_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ConfigurationError):
        CalmLog(logging.getLogger("casty.test"), lambda: 0.0, interval=interval)


async def test_bare_connections_to_a_node_are_logged_at_a_calm_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A port scan or a TCP health probe: connect, send nothing, close."""
    caplog.set_level(logging.WARNING, logger="casty.remote")
    async with ClusteredActorSystem("test") as system:
        address = system.node_address
        for _ in range(5):
            reader, writer = await asyncio.open_connection(address.host, address.port)
            writer.write_eof()
            assert await reader.read() == b""  # the node handled the connection and closed it
            writer.close()
            await writer.wait_closed()
    lines = [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()]
    assert len(lines) == 1, lines
