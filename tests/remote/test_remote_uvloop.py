"""Remoting on uvloop's event loop, whose transports are not `asyncio.Transport` subclasses.

Before the fix, TCP and TLS connections asserted ``isinstance(transport, asyncio.Transport)`` in
``connection_made``: on uvloop every connection failed there and no peer could be reached.
"""

from __future__ import annotations

import asyncio

import pytest
from remote_support import FAST, Echo, Pki, Recorder, Reply, echo_behavior

from casty.remote import RemoteActorSystem
from casty.transports.tcp import TCPTransport

uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (extra: test)")


async def _exchange(transport_a: object, transport_b: object) -> tuple[object, list[object]]:
    async with (
        RemoteActorSystem("t", transport=transport_a, settings=FAST) as a,
        RemoteActorSystem("t", transport=transport_b, settings=FAST) as b,
    ):
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        b.spawn(echo_behavior(), "echo")
        sink = Recorder(b, "sink")
        echo = a.resolve(b.address + "/user/echo")
        reply = await a.ask(echo, lambda r: Echo("on uvloop", r), timeout=5.0)
        target = a.resolve(sink.ref.address)
        for n in range(100):
            target.tell(n)
        return reply, await sink.wait_count(100)


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_tell_and_ask_over_uvloop(kind: str, pki: Pki) -> None:
    if kind == "tcp":
        transports: tuple[object, object] = (TCPTransport(), TCPTransport())
    else:
        transports = (pki.transport(pki.node_a), pki.transport(pki.node_b))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        reply, received = runner.run(_exchange(*transports))
    assert reply == Reply("on uvloop")
    assert received == list(range(100))
