"""MemoryTransport and its MemoryNetwork: addressing and fault injection."""

from __future__ import annotations

import asyncio

import pytest

from casty.abc import Address, Connection
from casty.errors import ConfigurationError, ConnectFailed, ConnectionBroken
from casty.testing import wait_until
from casty.testing.transport_contract import Recorder, echo, receive_exactly
from casty.transports import as_transport
from casty.transports.memory import MemoryNetwork, MemoryTransport

STEP = 5.0


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork(seed=1)


async def connect_pair(
    network: MemoryNetwork, handler: object = echo
) -> tuple[MemoryTransport, MemoryTransport, Connection]:
    server = MemoryTransport(network, node="a")
    client = MemoryTransport(network, node="b")
    listener = await server.listen(Address("a", 1), handler)  # type: ignore[arg-type]
    assert listener.address == Address("a", 1)
    connection = await client.connect(listener.address)
    return server, client, connection


async def test_port_zero_assigns_distinct_ports_per_host(network: MemoryNetwork) -> None:
    transport = MemoryTransport(network)
    first = await transport.listen(Address("a", 0), echo)
    second = await transport.listen(Address("a", 0), echo)
    other = await transport.listen(Address("b", 0), echo)
    assert first.address.port != second.address.port
    assert {first.address.host, other.address.host} == {"a", "b"}
    assert transport.node == "a"  # the first listen names the transport's host
    with pytest.raises(ConnectFailed, match="in use"):
        await transport.listen(first.address, echo)
    for listener in (first, second, other):
        await listener.aclose()
    # A closed listener frees its address.
    again = await transport.listen(first.address, echo)
    await again.aclose()


async def test_named_networks_are_shared_through_urls() -> None:
    server = as_transport("memory://shared-test-net?node=srv")
    client = as_transport("memory://shared-test-net")
    assert isinstance(server, MemoryTransport) and isinstance(client, MemoryTransport)
    assert server.network is client.network is MemoryNetwork.named("shared-test-net")
    listener = await server.listen(Address("srv", 0), echo)
    async with listener, await client.connect(listener.address) as connection:
        connection.send(b"shared")
        assert await receive_exactly(connection, 1) == [b"shared"]
    with pytest.raises(ConfigurationError):
        as_transport("memory://x?nodes=typo")


async def test_partition_both_ways_drops_frames_and_refuses_connections(
    network: MemoryNetwork,
) -> None:
    recorder = Recorder()
    _, client, connection = await connect_pair(network, recorder.handler)
    connection.send(b"before")
    await connection.drain()  # on the wire before the cut
    network.partition("a", "b")
    assert network.is_partitioned("a", "b") and network.is_partitioned("b", "a")
    connection.send(b"lost")
    await connection.drain()
    with pytest.raises(ConnectFailed, match="partitioned"):
        await client.connect(Address("a", 1))
    network.heal()
    connection.send(b"after")
    await connection.aclose()
    assert (await recorder.next()).frames == [b"before", b"after"]


async def test_oneway_partition_cuts_only_one_direction(network: MemoryNetwork) -> None:
    served: asyncio.Queue[Connection] = asyncio.Queue()

    async def handler(connection: Connection) -> None:
        await served.put(connection)
        await asyncio.Event().wait()

    _, _, client_side = await connect_pair(network, handler)
    server_side = await served.get()
    network.partition("a", "b", oneway=True)
    assert network.is_partitioned("a", "b") and not network.is_partitioned("b", "a")
    server_side.send(b"a->b lost")
    await server_side.drain()
    client_side.send(b"b->a delivered")
    assert await receive_exactly(server_side, 1) == [b"b->a delivered"]
    network.heal("a", "b")
    server_side.send(b"a->b healed")
    assert await receive_exactly(client_side, 1) == [b"a->b healed"]


async def test_delay_holds_frames_back_and_keeps_their_order(network: MemoryNetwork) -> None:
    _, _, connection = await connect_pair(network)
    network.delay("a", "b", 0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(100):
        connection.send(str(i).encode())
    echoed = await receive_exactly(connection, 100)
    assert echoed == [str(i).encode() for i in range(100)]
    assert loop.time() - started >= 0.1  # 0.05 s each way
    with pytest.raises(ConfigurationError):
        network.delay("a", "b", -1)


async def test_drop_loses_frames_with_the_given_probability(network: MemoryNetwork) -> None:
    recorder = Recorder()
    _, _, connection = await connect_pair(network, recorder.handler)
    network.drop("b", "a", 0.5, oneway=True)
    for i in range(1000):
        connection.send(i.to_bytes(2, "big"))
    await connection.drain()
    network.drop("b", "a", 0.0)
    connection.send(b"end")
    await connection.aclose()
    received = (await recorder.next()).frames
    assert received[-1] == b"end"
    numbers = [int.from_bytes(item, "big") for item in received[:-1]]
    assert numbers == sorted(numbers)  # what survives keeps its order
    assert 350 < len(numbers) < 650
    with pytest.raises(ConfigurationError):
        network.drop("a", "b", 1.5)
    with pytest.raises(ConfigurationError, match="drop"):
        network.drop("a", "b", float("nan"))


async def test_sever_resets_both_ends(network: MemoryNetwork) -> None:
    recorder = Recorder()
    _, client, connection = await connect_pair(network, recorder.handler)
    connection.send(b"delivered")
    await connection.drain()  # on the wire before the cut
    assert network.sever("b", "a") == 2
    outcome = await recorder.next()
    assert outcome.frames == [b"delivered"]
    assert isinstance(outcome.error, ConnectionBroken)
    with pytest.raises(ConnectionBroken):
        await connection.receive_many()
    with pytest.raises(ConnectionBroken):
        connection.send(b"too late")
    replacement = await client.connect(Address("a", 1))  # severing is not a partition
    await replacement.aclose()


async def test_identity_is_what_the_peer_configured(network: MemoryNetwork) -> None:
    seen: list[str | None] = []

    async def handler(connection: Connection) -> None:
        seen.append(connection.peer_identity)

    server = MemoryTransport(network, node="s", identity="CN=server")
    client = MemoryTransport(network, node="c", identity="CN=client")
    listener = await server.listen(Address("s", 0), handler)
    async with listener, await client.connect(listener.address) as connection:
        assert connection.peer_identity == "CN=server"
        assert connection.local_address.host == "c"
        await receive_exactly_end(connection)
    assert seen == ["CN=client"]


async def receive_exactly_end(connection: Connection) -> None:
    async with asyncio.timeout(STEP):
        assert await connection.receive_many() == []


async def test_connect_with_a_delay_longer_than_the_timeout_fails(
    network: MemoryNetwork,
) -> None:
    _, client, connection = await connect_pair(network)
    await connection.aclose()
    network.delay("a", "b", 0.05)
    with pytest.raises(ConnectFailed, match="timed out"):
        await client.connect(Address("a", 1), timeout=0.01)
    with pytest.raises(ConnectFailed, match="refused"):
        await client.connect(Address("nobody", 1))


async def test_fake_network_hands_out_named_transports() -> None:
    from casty.testing import FakeNetwork

    network = FakeNetwork(seed=3)
    a, b = network.transport("node-a"), network.transport("node-b", identity="CN=b")
    listener = await a.listen(Address("node-a", 0), echo)
    async with listener, await b.connect(listener.address) as connection:
        assert connection.local_address.host == "node-b"
        network.partition("node-a", "node-b")
        with pytest.raises(ConnectFailed):
            await b.connect(listener.address)


async def test_receive_into_hands_frames_over_without_waking_the_receiver(
    network: MemoryNetwork,
) -> None:
    served: asyncio.Queue[Connection] = asyncio.Queue()

    async def park(connection: Connection) -> None:
        await served.put(connection)
        await connection.receive_many()

    _, _, client = await connect_pair(network, park)
    server = await served.get()
    batches: list[list[bytes]] = []
    woken: list[bool] = []

    def on_frames(frames: list[bytes]) -> None:
        woken.append(asyncio.current_task() is receiving)
        batches.append(list(frames))

    server.send(b"\x00")
    await server.drain()  # waits in the inbox: nobody receives yet
    receiving = asyncio.ensure_future(client.receive_into(on_frames))
    await wait_until(lambda: bool(batches), STEP)  # the receiving task hands the inbox over
    for round_nr in range(1, 3):
        server.send(bytes([round_nr]))
        await server.drain()  # delivers straight into the handler, in this call
        assert batches[-1] == [bytes([round_nr])]
    assert batches == [[b"\x00"], [b"\x01"], [b"\x02"]]
    assert woken == [True, False, False]
    await server.aclose()
    async with asyncio.timeout(STEP):
        await receiving
    await client.aclose()


async def test_drain_returns_once_delayed_frames_reach_a_frame_handler(
    network: MemoryNetwork,
) -> None:
    # The sender's backlog counts frames still in flight; pushing them to the receiver's
    # handler must wake the sender's drain, as reading them with receive_many does.
    received: list[bytes] = []

    async def pushing(connection: Connection) -> None:
        await connection.receive_into(received.extend)

    listener = await MemoryTransport(network, node="a").listen(Address("a", 1), pushing)
    client = await MemoryTransport(network, node="b", high_water=1024).connect(listener.address)
    network.delay("b", "a", 0.02)
    for _ in range(16):
        client.send(bytes(512))
    async with asyncio.timeout(STEP):
        await client.drain()  # waits: 8 KiB in flight, above the 1 KiB high-water mark
    assert len(received) == 16
    await client.aclose()
    await listener.aclose()


class Wrapped(Connection):
    """A connection that delegates to another and keeps the ABC's default receive_into."""

    def __init__(self, inner: Connection) -> None:
        self.inner = inner
        self.max_frame_size = inner.max_frame_size

    @property
    def local_address(self) -> Address:
        return self.inner.local_address

    @property
    def remote_address(self) -> Address:
        return self.inner.remote_address

    @property
    def peer_identity(self) -> str | None:
        return self.inner.peer_identity

    def send(self, frame: bytes) -> None:
        self.inner.send(frame)

    async def drain(self) -> None:
        await self.inner.drain()

    async def receive_many(self) -> list[bytes]:
        return await self.inner.receive_many()

    async def receive(self) -> bytes:
        return await self.inner.receive()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def is_closing(self) -> bool:
        return self.inner.is_closing


async def test_the_default_receive_into_hands_over_batches_until_the_end(
    network: MemoryNetwork,
) -> None:
    served: asyncio.Queue[Connection] = asyncio.Queue()

    async def park(connection: Connection) -> None:
        await served.put(connection)
        await connection.receive_many()

    _, _, client = await connect_pair(network, park)
    server = await served.get()
    received: list[bytes] = []
    receiving = asyncio.ensure_future(Wrapped(client).receive_into(received.extend))
    for n in range(5):
        server.send(bytes([n]))
    await server.aclose()
    async with asyncio.timeout(STEP):
        await receiving
    assert received == [bytes([n]) for n in range(5)]


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1.0])
def test_delay_refuses_negative_and_non_finite_seconds(
    network: MemoryNetwork, seconds: float
) -> None:
    with pytest.raises(ConfigurationError, match="delay"):
        network.delay("a", "b", seconds)
    assert network._delays == {}


def test_heal_with_one_host_heals_only_the_rules_involving_it(network: MemoryNetwork) -> None:
    network.partition("a", "b")
    network.partition("c", "b")
    network.delay("c", "d", 1.0)
    network.drop("d", "a", 0.5, oneway=True)
    network.heal("a")
    assert not network.is_partitioned("a", "b") and not network.is_partitioned("b", "a")
    assert network.is_partitioned("c", "b") and network.is_partitioned("b", "c")
    assert network._delays == {("c", "d"): 1.0, ("d", "c"): 1.0}
    assert network._drops == {}
    network.heal("c", "b")
    assert not network.is_partitioned("c", "b")
    assert network._delays  # heal(a, b) leaves the c-d delay alone
    network.heal()
    assert network._delays == {}
