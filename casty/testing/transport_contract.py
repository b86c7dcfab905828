"""`TransportContract`: the checks every `casty.abc.Transport` must pass.

A transport's test module subclasses the contract once and provides a factory::

    import pytest
    from casty.testing import TransportCapabilities, TransportContract

    class TestMyTransport(TransportContract):
        @pytest.fixture
        def transport_factory(self):
            return lambda **options: MyTransport(**options)

        @pytest.fixture
        def capabilities(self):
            return TransportCapabilities(peer_identity=True)

The factory is called with keyword options ``max_frame_size`` and ``high_water`` (bytes) and
must return a fresh transport; transports made by one factory must reach each other (a memory
transport's factory shares one network). `listen_address` says where to listen (port 0).
Tests of malformed input need a raw peer, which writes bytes below the framing: declare
``raw_peers=True`` and provide `raw_connector` (`open_stream_raw_peer` serves socket-based
transports). A test whose capability is missing is skipped with the reason, never passed.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pytest

from casty.abc import Address, Connection, Listener, Transport
from casty.errors import ConnectFailed, ConnectionBroken, FrameTooLarge
from casty.testing.wait import wait_until

__all__ = [
    "RawConnector",
    "RawPeer",
    "StreamRawPeer",
    "TransportCapabilities",
    "TransportContract",
    "TransportFactory",
    "open_stream_raw_peer",
    "requires",
]

#: Seconds any single step of a contract test may take before the test fails.
STEP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class TransportCapabilities:
    """What a transport supports; tests needing an absent capability are skipped.

    Attributes:
        peer_identity: connections report an authenticated peer identity on both ends.
        raw_peers: the `raw_connector` fixture can open a raw byte-level peer.
    """

    peer_identity: bool = False
    raw_peers: bool = False


class RawPeer(Protocol):
    """A client that writes bytes straight onto a listener's stream, framing included."""

    def write(self, data: bytes) -> None:
        """Send ``data`` unframed."""

    async def aclose(self) -> None:
        """Close this end cleanly (the listener sees end of stream)."""

    async def wait_dropped(self) -> None:
        """Return once the listener closed or dropped the connection."""


class TransportFactory(Protocol):
    def __call__(self, **options: Any) -> Transport: ...


RawConnector = Callable[[Address], Awaitable[RawPeer]]

F = TypeVar("F", bound=Callable[..., Any])


def requires(*names: str) -> Callable[[F], F]:
    """Mark a contract test as needing the `TransportCapabilities` flags ``names``."""

    def mark(test: F) -> F:
        test._casty_requires = names  # type: ignore[attr-defined]
        return test

    return mark


class StreamRawPeer:
    """A `RawPeer` over an asyncio stream (TCP, or TLS when opened with an SSL context)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def aclose(self) -> None:
        self._writer.close()
        with suppress(OSError):
            await self._writer.wait_closed()

    async def wait_dropped(self) -> None:
        with suppress(OSError):
            while await self._reader.read(65536):
                pass
        self._writer.close()


async def open_stream_raw_peer(
    address: Address, ssl_context: ssl.SSLContext | None = None
) -> StreamRawPeer:
    """Open a `StreamRawPeer` to ``address`` (a TLS one when ``ssl_context`` is given)."""
    reader, writer = await asyncio.open_connection(address.host, address.port, ssl=ssl_context)
    return StreamRawPeer(reader, writer)


def frame(size: int, tag: int = 0) -> bytes:
    """A recognisable payload of ``size`` bytes."""
    pattern = struct.pack(">I", tag) + bytes(range(256))
    return (pattern * (size // len(pattern) + 1))[:size]


@dataclass
class Served:
    """A listener's side of a test: accepted connections are parked until `release` is set."""

    accepted: asyncio.Queue[Connection] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, connection: Connection) -> None:
        await self.accepted.put(connection)
        await self.release.wait()

    async def next(self) -> Connection:
        async with asyncio.timeout(STEP_TIMEOUT):
            return await self.accepted.get()


@dataclass
class Outcome:
    """What a recording handler saw: the frames, then the error that ended its stream."""

    frames: list[bytes] = field(default_factory=list)
    error: BaseException | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class Recorder:
    """A handler that receives until the stream ends and records one `Outcome` per peer."""

    def __init__(self) -> None:
        self.outcomes: asyncio.Queue[Outcome] = asyncio.Queue()

    async def handler(self, connection: Connection) -> None:
        outcome = Outcome()
        await self.outcomes.put(outcome)
        try:
            async for item in connection:
                outcome.frames.append(item)
        except (ConnectionBroken, FrameTooLarge) as exc:
            outcome.error = exc
        finally:
            outcome.finished.set()

    async def next(self) -> Outcome:
        async with asyncio.timeout(STEP_TIMEOUT):
            outcome = await self.outcomes.get()
            await outcome.finished.wait()
        return outcome


async def echo(connection: Connection) -> None:
    """A handler sending every frame back."""
    async for item in connection:
        connection.send(item)


async def receive_exactly(connection: Connection, count: int) -> list[bytes]:
    """Receive until ``count`` frames arrived (fails on end of stream first)."""
    received: list[bytes] = []
    async with asyncio.timeout(STEP_TIMEOUT):
        while len(received) < count:
            batch = await connection.receive_many()
            assert batch, f"stream ended after {len(received)} of {count} frames"
            received.extend(batch)
    return received


async def assert_echo_works(connection: Connection, tag: int) -> None:
    payload = frame(100, tag)
    connection.send(payload)
    assert await receive_exactly(connection, 1) == [payload]


async def assert_frames_buffered(connection: Connection, first: bytes) -> None:
    """Take ``first`` with `Connection.receive`, so the frames after it stay buffered."""
    async with asyncio.timeout(STEP_TIMEOUT):
        assert await connection.receive() == first


async def stream_ends(connection: Connection) -> bool:
    """Whether ``connection``'s stream ended (cleanly or broken) within the step timeout."""
    async with asyncio.timeout(STEP_TIMEOUT):
        try:
            while await connection.receive_many():
                pass
        except ConnectionBroken:
            pass
    return True


class TransportContract:
    """The Transport contract: subclass once per transport and override the fixtures."""

    pytestmark = pytest.mark.asyncio

    # ---- fixtures a subclass provides --------------------------------------------------------

    @pytest.fixture
    def transport_factory(self) -> TransportFactory:
        """Return a callable building a fresh transport from keyword options."""
        raise NotImplementedError("override transport_factory in the TransportContract subclass")

    @pytest.fixture
    def capabilities(self) -> TransportCapabilities:
        """Return the transport's `TransportCapabilities`."""
        return TransportCapabilities()

    @pytest.fixture
    def listen_address(self) -> Address:
        """Where the tests listen; port 0."""
        return Address("127.0.0.1", 0)

    @pytest.fixture
    def raw_connector(self) -> RawConnector:
        """Return ``async (address) -> RawPeer``; needed when ``raw_peers`` is declared."""
        raise NotImplementedError("declare raw_peers=True only with a raw_connector fixture")

    @pytest.fixture(autouse=True)
    def _check_capabilities(
        self, request: pytest.FixtureRequest, capabilities: TransportCapabilities
    ) -> None:
        for name in getattr(request.function, "_casty_requires", ()):
            if not getattr(capabilities, name):
                pytest.skip(f"the transport does not declare the {name!r} capability")

    # ---- helpers -----------------------------------------------------------------------------

    @asynccontextmanager
    async def listening(
        self, factory: TransportFactory, address: Address, handler: Any, **options: Any
    ) -> AsyncIterator[Listener]:
        transport = factory(**options)
        listener = await transport.listen(address, handler)
        try:
            yield listener
        finally:
            await listener.aclose()
            await transport.aclose()

    @asynccontextmanager
    async def pair(
        self,
        factory: TransportFactory,
        address: Address,
        server_options: dict[str, Any] | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> AsyncIterator[tuple[Connection, Connection, Listener]]:
        """A connected (client, server, listener); everything is closed on exit."""
        served = Served()
        async with self.listening(
            factory, address, served.handler, **(server_options or {})
        ) as listener:
            client_transport = factory(**(client_options or {}))
            client = await client_transport.connect(listener.address, timeout=STEP_TIMEOUT)
            try:
                server = await served.next()
                yield client, server, listener
            finally:
                served.release.set()
                await client.aclose()
                await client_transport.aclose()

    # ---- listening and connecting ------------------------------------------------------------

    async def test_listen_on_port_zero_reports_the_bound_port(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.listening(transport_factory, listen_address, echo) as listener:
            assert listener.address.port != 0
            assert listener.address.host == listen_address.host

    async def test_connection_addresses_match_the_listener(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, listener):
            assert client.remote_address == listener.address
            assert server.local_address == listener.address
            assert server.remote_address == client.local_address

    async def test_connect_to_a_closed_port_raises_connect_failed(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.listening(transport_factory, listen_address, echo) as listener:
            address = listener.address
        with pytest.raises(ConnectFailed):
            await transport_factory().connect(address, timeout=STEP_TIMEOUT)

    async def test_listener_aclose_is_idempotent(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        listener = await transport_factory().listen(listen_address, echo)
        await listener.aclose()
        await listener.aclose()

    async def test_listener_aclose_closes_accepted_connections(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        served = Served()
        transport = transport_factory()
        listener = await transport.listen(listen_address, served.handler)
        client = await transport_factory().connect(listener.address, timeout=STEP_TIMEOUT)
        server = await served.next()
        await listener.aclose()
        assert server.is_closing
        assert await stream_ends(client)
        await client.aclose()

    async def test_a_failing_handler_does_not_stop_the_listener(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        calls = 0

        async def handler(connection: Connection) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("handler bug")
            await echo(connection)

        async with self.listening(transport_factory, listen_address, handler) as listener:
            first = await transport_factory().connect(listener.address, timeout=STEP_TIMEOUT)
            assert await stream_ends(first)
            await first.aclose()
            second = await transport_factory().connect(listener.address, timeout=STEP_TIMEOUT)
            await assert_echo_works(second, 2)
            await second.aclose()

    # ---- delivery ----------------------------------------------------------------------------

    async def test_frames_arrive_in_order(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            sent = [frame(i % 300, i) for i in range(1000)]
            for item in sent:
                client.send(item)
            assert await receive_exactly(server, len(sent)) == sent

    async def test_frames_flow_both_ways(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            client.send(b"ping")
            assert await server.receive() == b"ping"
            server.send(b"pong")
            assert await client.receive() == b"pong"

    async def test_many_frames_sent_in_one_turn_arrive_whole(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            rng = random.Random(7)
            sent = [frame(rng.randrange(0, 2000), i) for i in range(10_000)]
            for item in sent:  # no await: every frame is queued in the same loop turn
                client.send(item)
            assert await receive_exactly(server, len(sent)) == sent

    async def test_empty_frame_is_delivered(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            client.send(b"")
            client.send(b"after")
            assert await receive_exactly(server, 2) == [b"", b"after"]

    async def test_frame_of_exactly_max_frame_size_is_delivered(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        limit = 256 * 1024
        options = {"max_frame_size": limit}
        async with self.pair(transport_factory, listen_address, options, options) as pair:
            client, server, _ = pair
            client.send(frame(limit, 1))
            server.send(frame(limit, 2))
            assert await server.receive() == frame(limit, 1)
            assert await client.receive() == frame(limit, 2)

    async def test_large_frames_up_to_the_default_limit(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            limit = client.max_frame_size
            assert limit == Transport.DEFAULT_MAX_FRAME_SIZE
            sent = [frame(limit, 1), frame(3 * 1024 * 1024 + 7, 2), b"tail"]
            for item in sent:
                client.send(item)
            assert await receive_exactly(server, 3) == sent

    async def test_receive_returns_one_frame_at_a_time(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            sent = [frame(10, i) for i in range(50)]
            for item in sent:
                client.send(item)
            async with asyncio.timeout(STEP_TIMEOUT):
                received = [await server.receive() for _ in range(25)]
                received += await receive_exactly(server, 25)
            assert received == sent

    async def test_concurrent_senders_keep_each_senders_order(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        senders, per_sender = 16, 300

        async def sender(connection: Connection, sender_id: int) -> None:
            for sequence_nr in range(per_sender):
                connection.send(struct.pack(">HI", sender_id, sequence_nr) + b"x" * sender_id)
                if sequence_nr % 7 == 0:
                    await connection.drain()
                    await asyncio.sleep(0)  # interleave with the other senders

        async with self.pair(transport_factory, listen_address) as (client, server, _):
            async with asyncio.TaskGroup() as group:
                for sender_id in range(senders):
                    group.create_task(sender(client, sender_id))
            received = await receive_exactly(server, senders * per_sender)
        seen: dict[int, list[int]] = {}
        for item in received:
            sender_id, sequence_nr = struct.unpack_from(">HI", item)
            assert item[6:] == b"x" * sender_id
            seen.setdefault(sender_id, []).append(sequence_nr)
        assert seen == {sender_id: list(range(per_sender)) for sender_id in range(senders)}

    async def test_receive_into_hands_over_every_frame_in_order_until_the_peer_closes(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            early = [frame(i % 50, i) for i in range(100)]
            for item in early:
                client.send(item)
            await client.drain()
            await assert_frames_buffered(server, early[0])
            late = [frame(i % 700, i) for i in range(100, 2100)]
            batches: list[list[bytes]] = []

            def handler(frames: list[bytes]) -> None:
                batches.append(list(frames))
                if len(batches) == 1:  # the buffered frames first, then the rest as it comes
                    for item in late:
                        client.send(item)
                    client.send(b"last")

            async with asyncio.timeout(STEP_TIMEOUT):
                receiving = asyncio.ensure_future(server.receive_into(handler))
                await wait_until(lambda: any(b"last" in batch for batch in batches))
                assert not receiving.done()
                await client.aclose()
                await receiving  # returns at the clean end of the stream
            assert [item for batch in batches for item in batch] == [*early[1:], *late, b"last"]
            assert await server.receive_many() == []

    async def test_receive_into_raises_what_the_handler_raised_and_stops_handing_over(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        class Refused(Exception):
            pass

        seen: list[bytes] = []

        def handler(frames: list[bytes]) -> None:
            for item in frames:
                if item == b"bad":
                    raise Refused(item)
                seen.append(item)

        async with self.pair(transport_factory, listen_address) as (client, server, _):
            client.send(b"good")
            async with asyncio.timeout(STEP_TIMEOUT):
                receiving = asyncio.ensure_future(server.receive_into(handler))
                await wait_until(lambda: seen == [b"good"])
                client.send(b"bad")
                with pytest.raises(Refused):
                    await receiving
                client.send(b"after")  # not handed over: the handler is gone
                assert await server.receive() == b"after"
        assert seen == [b"good"]

    async def test_receive_into_stops_when_cancelled_and_keeps_later_frames(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        seen: list[bytes] = []
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            client.send(b"one")
            async with asyncio.timeout(STEP_TIMEOUT):
                receiving = asyncio.ensure_future(server.receive_into(seen.extend))
                await wait_until(lambda: seen == [b"one"])
                receiving.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await receiving
                client.send(b"two")
                assert await server.receive() == b"two"
        assert seen == [b"one"]

    async def test_receive_into_raises_frame_too_large_after_the_frames_before_it(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        outcomes: asyncio.Queue[Outcome] = asyncio.Queue()

        async def handler(connection: Connection) -> None:
            outcome = Outcome()
            try:
                await connection.receive_into(outcome.frames.extend)
            except (ConnectionBroken, FrameTooLarge) as exc:
                outcome.error = exc
            await outcomes.put(outcome)

        async with self.listening(
            transport_factory, listen_address, handler, max_frame_size=1024
        ) as listener:
            client_transport = transport_factory()
            client = await client_transport.connect(listener.address, timeout=STEP_TIMEOUT)
            client.send(b"fits")
            client.send(b"x" * 1025)
            async with asyncio.timeout(STEP_TIMEOUT):
                outcome = await outcomes.get()
            assert outcome.frames == [b"fits"]
            assert isinstance(outcome.error, FrameTooLarge)
            await client.aclose()
            await client_transport.aclose()

    # ---- frame limit -------------------------------------------------------------------------

    async def test_send_over_the_limit_raises_and_the_connection_stays_usable(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        options = {"max_frame_size": 1024}
        async with self.pair(transport_factory, listen_address, options, options) as pair:
            client, server, _ = pair
            with pytest.raises(FrameTooLarge):
                client.send(b"x" * 1025)
            assert not client.is_closing
            client.send(b"y" * 1024)
            assert await server.receive() == b"y" * 1024

    async def test_receive_over_the_limit_raises_and_drops_only_that_connection(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        recorder = Recorder()
        async with self.listening(
            transport_factory, listen_address, recorder.handler, max_frame_size=64 * 1024
        ) as listener:
            client_transport = transport_factory(max_frame_size=1024 * 1024)
            client = await client_transport.connect(listener.address, timeout=STEP_TIMEOUT)
            client.send(b"fits")
            client.send(b"x" * (64 * 1024 + 1))
            outcome = await recorder.next()
            assert outcome.frames == [b"fits"]
            assert isinstance(outcome.error, FrameTooLarge)
            assert await stream_ends(client)
            await client.aclose()
            healthy = await client_transport.connect(listener.address, timeout=STEP_TIMEOUT)
            healthy.send(b"still serving")
            await healthy.aclose()
            assert (await recorder.next()).frames == [b"still serving"]

    @requires("raw_peers")
    async def test_announced_length_over_the_limit_drops_the_peer_at_once(
        self,
        transport_factory: TransportFactory,
        listen_address: Address,
        raw_connector: RawConnector,
    ) -> None:
        recorder = Recorder()
        async with self.listening(transport_factory, listen_address, recorder.handler) as lst:
            raw = await raw_connector(lst.address)
            raw.write(struct.pack(">I", 3) + b"abc" + struct.pack(">I", 2**32 - 1))
            outcome = await recorder.next()  # no body follows: the header alone is refused
            assert outcome.frames == [b"abc"]
            assert isinstance(outcome.error, FrameTooLarge)
            async with asyncio.timeout(STEP_TIMEOUT):
                await raw.wait_dropped()

    # ---- closing -----------------------------------------------------------------------------

    async def test_receive_after_peer_close_ends_iteration(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            for i in range(3):
                client.send(frame(10, i))
            await client.aclose()
            async with asyncio.timeout(STEP_TIMEOUT):
                received = [item async for item in server]
                assert received == [frame(10, i) for i in range(3)]
                assert await server.receive_many() == []
                assert await server.receive_many() == []
                with pytest.raises(ConnectionBroken):
                    await server.receive()
            assert server.is_closing

    async def test_connection_aclose_is_idempotent_and_later_sends_raise(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, _, _):
            await client.aclose()
            await client.aclose()
            assert client.is_closing
            with pytest.raises(ConnectionBroken):
                client.send(b"late")
            assert await client.receive_many() == []

    async def test_frames_queued_before_aclose_are_flushed(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        recorder = Recorder()
        async with self.listening(transport_factory, listen_address, recorder.handler) as lst:
            client = await transport_factory().connect(lst.address, timeout=STEP_TIMEOUT)
            sent = [frame(100, i) for i in range(100)]
            for item in sent:
                client.send(item)
            await client.aclose()
            outcome = await recorder.next()
            assert outcome.frames == sent
            assert outcome.error is None

    @requires("raw_peers")
    async def test_peer_vanishing_mid_frame_raises_connection_broken(
        self,
        transport_factory: TransportFactory,
        listen_address: Address,
        raw_connector: RawConnector,
    ) -> None:
        recorder = Recorder()
        async with self.listening(transport_factory, listen_address, recorder.handler) as lst:
            raw = await raw_connector(lst.address)
            raw.write(struct.pack(">I", 2) + b"ok" + struct.pack(">I", 100) + b"only ten b")
            await raw.aclose()
            outcome = await recorder.next()
            assert outcome.frames == [b"ok"]
            assert isinstance(outcome.error, ConnectionBroken)

    # ---- backpressure ------------------------------------------------------------------------

    async def test_drain_applies_backpressure_until_the_peer_reads(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        options = {"high_water": 64 * 1024}
        chunk = frame(16 * 1024, 9)
        budget = 64 * 1024 * 1024
        async with self.pair(transport_factory, listen_address, options, options) as pair:
            client, server, _ = pair
            sent = 0
            blocked: asyncio.Task[None] | None = None
            while sent * len(chunk) < budget:
                client.send(chunk)
                sent += 1
                drain = asyncio.ensure_future(client.drain())
                done, _ = await asyncio.wait({drain}, timeout=0.2)
                if not done:
                    blocked = drain
                    break
                drain.result()
            assert blocked is not None, f"drain never waited while {budget} bytes were unread"
            received = await receive_exactly(server, sent)
            async with asyncio.timeout(STEP_TIMEOUT):
                await blocked
        assert received == [chunk] * sent

    # ---- identity and bad peers --------------------------------------------------------------

    @requires("peer_identity")
    async def test_both_ends_report_the_peer_identity(
        self, transport_factory: TransportFactory, listen_address: Address
    ) -> None:
        async with self.pair(transport_factory, listen_address) as (client, server, _):
            assert isinstance(client.peer_identity, str) and client.peer_identity
            assert isinstance(server.peer_identity, str) and server.peer_identity

    @requires("raw_peers")
    async def test_bad_peers_do_not_disturb_a_healthy_connection(
        self,
        transport_factory: TransportFactory,
        listen_address: Address,
        raw_connector: RawConnector,
    ) -> None:
        rng = random.Random(4)
        recorder = Recorder()

        async def handler(connection: Connection) -> None:
            # The first peer is the healthy one and gets echoes; the bad ones are recorded.
            if not healthy_ready.is_set():
                healthy_ready.set()
                await echo(connection)
            else:
                await recorder.handler(connection)

        healthy_ready = asyncio.Event()
        bad_inputs = [
            bytes(rng.randrange(256) for _ in range(4096)),  # random bytes
            struct.pack(">I", 1000) + b"truncated",  # a frame cut off by the close below
            struct.pack(">I", 2**31) + b"x" * 64,  # an over-limit announced length
        ]
        async with self.listening(transport_factory, listen_address, handler) as listener:
            healthy = await transport_factory().connect(listener.address, timeout=STEP_TIMEOUT)
            await assert_echo_works(healthy, 0)
            for i, data in enumerate(bad_inputs):
                raw = await raw_connector(listener.address)
                raw.write(data)
                await assert_echo_works(healthy, i + 1)
                await raw.aclose()
                outcome = await recorder.next()
                assert isinstance(outcome.error, ConnectionBroken | FrameTooLarge), outcome
                await assert_echo_works(healthy, i + 100)
            await healthy.aclose()
