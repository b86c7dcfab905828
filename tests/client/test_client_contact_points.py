"""ClusterClient's contact points on real TCP: a contact point that refuses the connection or
the handshake is skipped at once (not after ``connect_timeout``), and the error when none
answers gives each one's reason.

``connect_timeout`` is long on purpose: a contact point recorded as "connection refused" or
"handshake refused" was given up before it, whereas a wait for it would read "timed out".
"""

from __future__ import annotations

import asyncio

import client_support  # noqa: F401  (puts the sharding harness on the path)
import pytest
from sharding_harness import free_ports, start_cluster, stop_all

from casty.abc import Address
from casty.client import ClusterClient
from casty.errors import ConnectFailed

pytestmark = pytest.mark.slow

LONG = 30.0


async def test_a_refusing_first_contact_point_is_skipped_at_once() -> None:
    nodes = await start_cluster(1)
    try:
        (dead,) = free_ports(1)
        live = nodes[0].system.node_address
        async with ClusterClient(
            contact_points=[f"127.0.0.1:{dead}", f"{live.host}:{live.port}"],
            system_name="test",
            connect_timeout=LONG,
        ) as client:
            assert client.contact_failures == {Address("127.0.0.1", dead): "connection refused"}
            snapshot = client.topology
            assert snapshot is not None
            assert [m.address for m in snapshot.members] == [live]
    finally:
        await stop_all(nodes, leave=False)


async def test_when_every_contact_point_refuses_the_error_names_each_reason() -> None:
    ports = free_ports(2)
    client = ClusterClient(
        contact_points=[f"127.0.0.1:{p}" for p in ports],
        system_name="test",
        connect_timeout=LONG,
    )
    with pytest.raises(ConnectFailed) as info:
        async with client:
            pass
    message = str(info.value)
    for port in ports:
        assert f"127.0.0.1:{port}: connection refused" in message
    assert "timed out" not in message


async def test_a_system_name_mismatch_is_named_in_the_error() -> None:
    nodes = await start_cluster(1)
    try:
        live = nodes[0].system.node_address
        (dead,) = free_ports(1)
        client = ClusterClient(
            contact_points=[f"{live.host}:{live.port}", f"127.0.0.1:{dead}"],
            system_name="other",
            connect_timeout=LONG,
        )
        with pytest.raises(ConnectFailed) as info:
            async with client:
                pass
        message = str(info.value)
        assert f"{live}: handshake refused: system name mismatch" in message
        assert "'other'" in message and "'test'" in message
        assert f"127.0.0.1:{dead}: connection refused" in message
    finally:
        await stop_all(nodes, leave=False)


async def test_a_silent_contact_point_times_out_within_connect_timeout() -> None:
    """A listener that accepts but never answers the handshake is waited for, boundedly."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = ClusterClient(cluster_host="127.0.0.1", cluster_port=port, connect_timeout=0.5)
        with pytest.raises(ConnectFailed) as info:
            async with client:
                pass
        assert f"127.0.0.1:{port}: timed out (no topology within 0.5 s)" in str(info.value)
    finally:
        server.close()
        await server.wait_closed()
