"""TCPTransport specifics: URL options, socket options, write batching, bind and connect errors."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

import pytest

from casty.abc import Address, Connection
from casty.errors import ConfigurationError, ConnectFailed, FrameTooLarge, TransportError
from casty.testing import wait_until
from casty.testing.transport_contract import echo, receive_exactly
from casty.transports import as_transport
from casty.transports.tcp import StreamConnection, TCPTransport

LOCAL = Address("127.0.0.1", 0)


def test_url_options_and_keywords_configure_the_transport() -> None:
    transport = as_transport(
        "tcp://0.0.0.0:25520?max_frame_size=1024&high_water=4096&connect_timeout=0.5",
        high_water=8192,
    )
    assert isinstance(transport, TCPTransport)
    assert transport.max_frame_size == 1024
    assert transport.high_water == 8192  # the keyword wins over the query
    assert transport.connect_timeout == 0.5
    assert transport.default_address == Address("0.0.0.0", 25520)
    assert as_transport("tcp://").default_address is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    ["tcp://?max_frame_size=0", "tcp://?max_frame_size=big", "tcp://?high_water=-1", "tcp://?x=1"],
)
def test_bad_url_options_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        as_transport(url)


async def test_sockets_have_tcp_nodelay() -> None:
    served: asyncio.Queue[Connection] = asyncio.Queue()

    async def handler(connection: Connection) -> None:
        await served.put(connection)
        await connection.receive_many()

    transport = TCPTransport()
    listener = await transport.listen(LOCAL, handler)
    async with listener, await transport.connect(listener.address) as client:
        server = await served.get()
        for connection in (client, server):
            assert isinstance(connection, StreamConnection)
            sock = connection._transport.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def counted_writes(connection: StreamConnection) -> list[int]:
    """The sizes of the writes on ``connection``'s socket from now on (a spy on asyncio's
    transport, not on casty)."""
    socket_transport = connection._transport
    assert socket_transport is not None
    writes: list[int] = []
    original = socket_transport.write

    def counting_write(data: Any) -> None:
        writes.append(len(data))
        original(data)

    socket_transport.write = counting_write  # type: ignore[method-assign]
    return writes


async def test_frames_sent_in_one_turn_leave_in_at_most_two_writes() -> None:
    transport = TCPTransport()
    listener = await transport.listen(LOCAL, echo)
    async with listener, await transport.connect(listener.address) as client:
        assert isinstance(client, StreamConnection) and client._transport is not None
        writes = counted_writes(client)
        for i in range(500):
            client.send(i.to_bytes(4, "big"))
        echoed = await receive_exactly(client, 500)
        assert echoed == [i.to_bytes(4, "big") for i in range(500)]
        # The first frame of the turn leaves at once (latency); the other 499 in one write.
        assert writes == [8, 499 * 8]


async def test_a_frame_leaves_at_once_again_once_the_peer_has_answered() -> None:
    # Request/reply needs no end-of-turn callback: after a frame written at once, the next one
    # waits for the flush, unless the peer's data arrived in between.
    transport = TCPTransport()
    served: asyncio.Queue[Connection] = asyncio.Queue()
    finished = asyncio.Event()

    async def hand_over(connection: Connection) -> None:
        await served.put(connection)
        await finished.wait()  # the connection stays open while the test uses it

    listener = await transport.listen(LOCAL, hand_over)
    async with listener, await transport.connect(listener.address) as client:
        assert isinstance(client, StreamConnection) and client._transport is not None
        server = await served.get()
        writes = counted_writes(client)
        client.send(b"req1")
        assert writes == [8]  # an idle socket: at once
        loop = asyncio.get_running_loop()
        later: asyncio.Future[list[int]] = loop.create_future()

        def send_in_a_later_turn() -> None:
            client.send(b"req2")
            later.set_result(list(writes))

        loop.call_soon(send_in_a_later_turn)
        assert await later == [8]  # no answer yet: it waits for the end-of-turn flush
        assert await receive_exactly(server, 2) == [b"req1", b"req2"]
        assert writes == [8, 8]
        server.send(b"rep")
        assert await receive_exactly(client, 1) == [b"rep"]
        client.send(b"req3")
        assert writes == [8, 8, 8]  # the peer answered: at once again
        assert await receive_exactly(server, 1) == [b"req3"]
        finished.set()


async def test_listening_on_a_taken_port_raises_connect_failed() -> None:
    transport = TCPTransport()
    listener = await transport.listen(LOCAL, echo)
    async with listener:
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            taken = Address("127.0.0.1", other.getsockname()[1])
            with pytest.raises(ConnectFailed, match="cannot listen"):
                await transport.listen(taken, echo)


async def test_connect_to_an_unresolvable_host_raises_connect_failed() -> None:
    with pytest.raises(ConnectFailed, match="cannot connect"):
        await TCPTransport().connect(Address("no-such-host.invalid", 1), timeout=2.0)


async def test_receive_into_hands_frames_over_from_the_read_callback() -> None:
    # Push mode: the receiving task is never woken for a batch; the socket callback delivers.
    transport = TCPTransport()
    served: asyncio.Queue[Connection] = asyncio.Queue()

    async def park(connection: Connection) -> None:
        await served.put(connection)
        await connection.receive_many()

    listener = await transport.listen(LOCAL, park)
    async with listener, await transport.connect(listener.address) as client:
        server = await served.get()
        batches: list[tuple[bool, list[bytes]]] = []
        receiving = asyncio.ensure_future(
            client.receive_into(
                lambda frames: batches.append((asyncio.current_task() is None, list(frames)))
            )
        )
        for round_nr in range(3):
            server.send(round_nr.to_bytes(4, "big"))
            await server.drain()
            await wait_until(lambda count=round_nr: len(batches) > count, 5.0)
        assert batches == [(True, [n.to_bytes(4, "big")]) for n in range(3)]
        await server.aclose()
        async with asyncio.timeout(5.0):
            await receiving


async def test_receive_into_takes_whole_frames_split_frames_and_handler_errors() -> None:
    # A raw peer controls how the bytes are cut: a chunk holding exactly one frame (the
    # request/reply shortcut), a frame cut in two, a chunk of two frames; then a frame whose
    # handler raises, which ends receive_into with that error.
    writers: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await writers.put(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, await TCPTransport().connect(Address("127.0.0.1", port)) as client:
        peer = await writers.get()
        batches: list[list[bytes]] = []

        def handler(frames: list[bytes]) -> None:
            if b"bad" in frames:
                raise ValueError("handler failed")
            batches.append(list(frames))

        receiving = asyncio.ensure_future(client.receive_into(handler))

        async def send(data: bytes, count: int) -> None:
            peer.write(data)
            await peer.drain()
            await wait_until(lambda: len(batches) >= count, 5.0)

        def frame(payload: bytes) -> bytes:
            return len(payload).to_bytes(4, "big") + payload

        await send(frame(b"one"), 1)
        await send(frame(b"two")[:5], 1)
        assert isinstance(client, StreamConnection)
        await wait_until(lambda: client._parser.pending == 5, 5.0)  # held back, incomplete
        await send(frame(b"two")[5:] + frame(b"three") + frame(b"four"), 2)
        assert batches == [[b"one"], [b"two", b"three", b"four"]]
        peer.write(frame(b"bad"))
        await peer.drain()
        with pytest.raises(ValueError, match="handler failed"):
            async with asyncio.timeout(5.0):
                await receiving
        peer.close()


@pytest.mark.parametrize(
    "url",
    [
        "tcp://?connect_timeout=nan",
        "tcp://?connect_timeout=inf",
        "tcp://?connect_timeout=-inf",
        "tcp://?connect_timeout=0",
    ],
)
def test_timeouts_must_be_finite_positive_numbers(url: str) -> None:
    with pytest.raises(ConfigurationError, match="connect_timeout must be a finite positive"):
        as_transport(url)
    with pytest.raises(ConfigurationError, match="connect_timeout"):
        TCPTransport(connect_timeout=float("nan"))


def test_a_repeated_query_option_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="max_frame_size"):
        as_transport("tcp://?max_frame_size=1&max_frame_size=2")


async def until_dropped(reader: asyncio.StreamReader) -> None:
    """Wait until the listener closed or reset a raw peer's socket."""
    async with asyncio.timeout(5.0):
        try:
            assert await reader.read() == b""
        except ConnectionResetError:
            pass  # aborted: the listener dropped it without a flush


async def test_a_tls_client_hello_on_a_tcp_listener_hints_at_tls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="casty.transports")
    errors: list[BaseException] = []

    async def handler(connection: Connection) -> None:
        try:
            async for _ in connection:
                pass
        except TransportError as exc:
            errors.append(exc)

    async with await TCPTransport().listen(LOCAL, handler) as listener:
        reader, writer = await asyncio.open_connection(listener.address.host, listener.address.port)
        # What a TLS client sends first: a handshake record (0x16, version 0x03 0x01).
        writer.write(bytes.fromhex("160301020001") + bytes(64))
        await until_dropped(reader)
        writer.close()
        await wait_until(lambda: bool(errors), message="the handler saw the drop")
    assert isinstance(errors[0], FrameTooLarge)
    assert "is the peer using TLS?" in str(errors[0])
    assert any("is the peer using TLS?" in r.getMessage() for r in caplog.records)


async def test_a_handler_ending_with_its_connections_error_is_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="casty.transports")
    done: list[str] = []

    async def documented(connection: Connection) -> None:
        try:
            async for frame in connection:
                connection.send(frame)
        finally:
            done.append("documented")

    async def buggy(connection: Connection) -> None:
        done.append("buggy")
        raise RuntimeError("handler bug")

    def ends() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "handler for" in r.getMessage()]

    for count, handler in enumerate((documented, buggy), 1):
        async with await TCPTransport(max_frame_size=16).listen(LOCAL, handler) as listener:
            reader, writer = await asyncio.open_connection(
                listener.address.host, listener.address.port
            )
            writer.write(struct.pack(">I", 1000) + b"x")  # over the 16-byte limit
            await until_dropped(reader)
            writer.close()
            await wait_until(
                lambda n=count: len(ends()) == n, message="the listener logged the handler's end"
            )
    assert [(r.levelno, r.exc_info is not None) for r in ends()] == [
        (logging.DEBUG, False),
        (logging.ERROR, True),
    ]
    assert "16 bytes" in ends()[0].getMessage()  # the reason, for whoever debugs
    assert sorted(done) == ["buggy", "documented"]
