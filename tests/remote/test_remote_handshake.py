"""The handshake refuses mismatched or misbehaving peers, with a logged reason on both sides,
and a bad peer never disturbs a healthy one."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import msgpack
import pytest
from remote_support import (
    FAST,
    Blob,
    DeadLetters,
    Echo,
    MakeSystem,
    Num,
    Pki,
    Recorder,
    Watcher,
    echo_behavior,
    hello,
    watched_by,
)

from casty.abc import Address
from casty.errors import ConfigurationError, ConnectFailed, HandshakeFailed
from casty.remote import PROTOCOL_VERSION, RemoteActorSystem, RemoteDeadLetterReason
from casty.remote.envelope import Accept, Refuse, decode_handshake, encode_handshake
from casty.testing import ManualClock, wait_until

HEADER = struct.Struct(">I")


def framed(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


class RawPeer:
    """A plain socket speaking bytes to a node, below the Casty protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read_frame(self) -> bytes:
        async with asyncio.timeout(5.0):
            (size,) = HEADER.unpack(await self.reader.readexactly(4))
            return await self.reader.readexactly(size)

    async def wait_closed_by_peer(self) -> None:
        """Return once the node closed the connection (EOF or reset)."""
        async with asyncio.timeout(5.0):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionError:
                pass

    async def handshake(self, node: RemoteActorSystem) -> Accept:
        self.writer.write(framed(encode_handshake(hello(node.node_address))))
        answer = decode_handshake(await self.read_frame())
        assert isinstance(answer, Accept), answer
        return answer


@asynccontextmanager
async def raw_peer(node: RemoteActorSystem) -> AsyncIterator[RawPeer]:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.node_address.port)
    try:
        yield RawPeer(reader, writer)
    finally:
        writer.close()


async def test_wrong_system_name_is_refused_on_both_sides(
    make_system: MakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await make_system("shop"), await make_system("bank")
    with (
        caplog.at_level(logging.WARNING, "casty.remote"),
        pytest.raises(HandshakeFailed, match="system name mismatch"),
    ):
        await a.associate(b.node_address, timeout=2.0)
    refusals = [r for r in caplog.records if "system name mismatch" in r.getMessage()]
    # The acceptor logs the refusal, and the initiator logs what it was told.
    assert any("refused a connection" in r.getMessage() for r in refusals)
    assert any("handshake with" in r.getMessage() for r in refusals)


async def test_serializer_mismatch_is_refused(make_system: MakeSystem) -> None:
    a, b = await make_system(serializer="pickle"), await make_system()
    with pytest.raises(HandshakeFailed, match="serializer mismatch"):
        await a.associate(b.node_address, timeout=2.0)


async def test_wrong_protocol_version_is_refused(
    make_system: MakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    b = await make_system()
    future_hello = msgpack.packb(
        [0, "casty", PROTOCOL_VERSION + 1, "t", "127.0.0.1", 1, 5, "127.0.0.1", 0, "msgpack"]
    )
    with caplog.at_level(logging.WARNING, "casty.remote"):
        async with raw_peer(b) as peer:
            peer.writer.write(framed(future_hello))
            answer = decode_handshake(await peer.read_frame())
            await peer.wait_closed_by_peer()
    assert isinstance(answer, Refuse)
    assert "protocol version mismatch" in answer.reason
    assert "protocol version mismatch" in caplog.text


async def test_a_peer_answering_with_another_version_fails_the_handshake(
    make_system: MakeSystem,
) -> None:
    a = await make_system()

    async def old_node(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (size,) = HEADER.unpack(await reader.readexactly(4))
        await reader.readexactly(size)
        writer.write(framed(msgpack.packb([1, "casty", PROTOCOL_VERSION + 1, "t", "x", 1, 2])))
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(old_node, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(HandshakeFailed, match="protocol version mismatch"):
            await a.associate(f"127.0.0.1:{port}", timeout=2.0)


async def test_a_peer_that_sends_nothing_is_dropped_after_the_handshake_timeout(
    make_system: MakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    b = await make_system(settings=replace(FAST, handshake_timeout=0.2))
    with caplog.at_level(logging.WARNING, "casty.remote"):
        async with raw_peer(b) as peer:
            await peer.wait_closed_by_peer()
    assert "no handshake within 0.2 s" in caplog.text


async def test_a_node_that_never_answers_fails_the_handshake(make_system: MakeSystem) -> None:
    a = await make_system(settings=replace(FAST, handshake_timeout=0.2))
    silent_peers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent_peers.append(writer)
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(HandshakeFailed, match="no handshake answer"):
            await a.associate(f"127.0.0.1:{port}", timeout=2.0)
        for writer in silent_peers:
            writer.close()


async def test_a_node_refuses_a_hello_meant_for_another_address(make_system: MakeSystem) -> None:
    b = await make_system()
    meant_elsewhere = hello(Address("10.9.8.7", b.node_address.port), incarnation=7)
    async with raw_peer(b) as peer:
        peer.writer.write(framed(encode_handshake(meant_elsewhere)))
        answer = decode_handshake(await peer.read_frame())
    assert isinstance(answer, Refuse) and "meant to reach 10.9.8.7" in answer.reason


async def test_a_plain_tcp_peer_is_refused_by_a_tls_node(
    make_system: MakeSystem, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    a = await make_system()
    b = await make_system(transport=pki.transport(pki.node_b))
    with caplog.at_level(logging.WARNING):
        with pytest.raises((HandshakeFailed, ConnectFailed)):
            await a.associate(b.node_address, timeout=1.5)
        await wait_until(lambda: "casty.transports" in {r.name for r in caplog.records})
    # The dialling side cannot tell a TLS node from a stopping one; its log line names both.
    assert any("using TLS" in record.getMessage() for record in caplog.records)


async def test_a_node_with_a_foreign_certificate_is_refused(
    make_system: MakeSystem, pki: Pki
) -> None:
    a = await make_system(transport=pki.transport(pki.foreign, pki.foreign_ca))
    b = await make_system(transport=pki.transport(pki.node_b))
    with pytest.raises(HandshakeFailed):
        await a.associate(b.node_address, timeout=1.5)


@pytest.mark.parametrize("refused_by", ["the dialling node", "the listening node"])
async def test_asks_and_tells_to_a_node_whose_tls_refuses_us_end_at_once(
    make_system: MakeSystem,
    pki: Pki,
    dead_letters: DeadLetters,
    refused_by: str,
) -> None:
    # The dialler's own CA does not trust the listener, or the listener's CA not the dialler.
    trusted = pki.foreign_ca if refused_by == "the dialling node" else pki.ca
    transport = pki.transport(pki.foreign, trusted)
    # A long failure_timeout: before the fix the ask ended only when the peer was declared lost.
    a = await make_system(transport=transport, settings=replace(FAST, failure_timeout=30.0))
    b = await make_system(transport=pki.transport(pki.node_b))
    b.spawn(echo_behavior(), "echo")
    dropped = dead_letters(a)
    echo = a.resolve(b.address + "/user/echo")
    echo.tell(Num(1))
    started = asyncio.get_running_loop().time()
    with pytest.raises(HandshakeFailed, match="handshake failed") as info:
        await a.ask(echo, lambda r: Echo("hello", r), timeout=30.0)
    assert asyncio.get_running_loop().time() - started < 15.0  # neither timeout
    assert info.value.permanent
    await dropped.wait_count(2)
    assert [(d.message, d.reason) for d in dropped.messages][:1] == [
        (Num(1), RemoteDeadLetterReason.HANDSHAKE_FAILED)
    ]


async def test_misbehaving_peers_are_dropped_while_a_healthy_peer_keeps_flowing(
    make_system: MakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await make_system(), await make_system()
    sink = Recorder(b, "sink")
    target = a.resolve(sink.ref.address)
    sent = 0
    stop = asyncio.Event()

    async def feed() -> None:
        nonlocal sent
        while not stop.is_set():
            target.tell(Num(sent))
            sent += 1
            await asyncio.sleep(0.001)  # pacing of the load generator, not synchronisation

    feeder = asyncio.create_task(feed())
    try:
        await sink.wait_count(20)
        rng = random.Random(4)
        with caplog.at_level(logging.WARNING):
            # Random bytes: a garbage handshake frame.
            async with raw_peer(b) as peer:
                peer.writer.write(framed(rng.randbytes(40)))
                await peer.wait_closed_by_peer()
            # Random bytes whose first four announce a huge frame.
            async with raw_peer(b) as peer:
                peer.writer.write(b"\xff\xff\xff\xf0" + rng.randbytes(100))
                await peer.wait_closed_by_peer()
            # A frame cut off mid-way.
            async with raw_peer(b) as peer:
                peer.writer.write(HEADER.pack(100) + b"0123456789")
                peer.writer.write_eof()
                await peer.wait_closed_by_peer()
            # A valid handshake, then an unknown frame type.
            async with raw_peer(b) as peer:
                await peer.handshake(b)
                peer.writer.write(framed(msgpack.packb([99, "what is this"])))
                await peer.wait_closed_by_peer()
            # A valid handshake, then an unknown control operation.
            async with raw_peer(b) as peer:
                await peer.handshake(b)
                peer.writer.write(framed(msgpack.packb([3, 77, 0])))
                await peer.wait_closed_by_peer()
            # A valid handshake, then an envelope that is not msgpack at all.
            async with raw_peer(b) as peer:
                await peer.handshake(b)
                peer.writer.write(framed(b"\xc1\xc1\xc1"))
                await peer.wait_closed_by_peer()
        count = len(sink.messages)
        await sink.wait_count(count + 20)  # still flowing
    finally:
        stop.set()
        await feeder
    final = sent
    await sink.wait_count(final)
    assert sink.messages == [Num(n) for n in range(final)]  # nothing lost, nothing reordered
    log = caplog.text
    assert "malformed handshake frame" in log
    assert "peer announced a" in log  # the transport's FrameTooLarge
    assert "mid-frame" in log
    assert "unknown frame type 99" in log
    assert "unknown control operation 77" in log
    assert "malformed envelope frame" in log
    assert a.remote_statistics().peers[0].connected


async def test_associate_refuses_a_node_address_of_another_system(make_system: MakeSystem) -> None:
    a = await make_system()
    with pytest.raises(ConfigurationError, match="a node of system 'other', not 't'"):
        await a.associate("casty://other@127.0.0.1:1", timeout=1.0)
    assert a.remote_statistics().peers == ()  # nothing dialled


@pytest.mark.parametrize("same_incarnation", [False, True], ids=["another", "the same"])
async def test_a_second_node_claiming_a_live_peers_address_is_refused(
    make_system: MakeSystem, same_incarnation: bool
) -> None:
    # Before, a claim with another incarnation was taken for a restart (the live peer was
    # quarantined, its watches fired, its traffic went to the impostor), and one with the same
    # incarnation (ACCEPT tells it to any dialler) replaced the live connection.
    settings = replace(FAST, handshake_timeout=4.0)  # the probe waits up to 2 s for an answer
    a, b = await make_system(settings=settings), await make_system(settings=settings)
    sink = Recorder(b, "sink")
    watcher = Watcher(a, "watcher")
    remote = a.resolve(sink.ref.address)
    await watcher.watch(remote)
    await wait_until(lambda: watched_by(b) == 1)
    incarnation = b.incarnation
    node = b.node_address
    claimed = incarnation if same_incarnation else incarnation ^ 1
    claim = hello(a.node_address, host=node.host, port=node.port, incarnation=claimed)
    async with raw_peer(a) as impostor:
        impostor.writer.write(framed(encode_handshake(claim)))
        answer = decode_handshake(await impostor.read_frame())
    assert isinstance(answer, Refuse)
    if same_incarnation:
        assert answer.transient and "established and answers" in answer.reason
    else:
        assert f"alive as incarnation {incarnation}" in answer.reason
    remote.tell(Num(1))
    assert await sink.wait_count(1) == [Num(1)]
    assert watcher.terminated() == []
    assert not a.is_quarantined(node, incarnation)


@pytest.mark.parametrize("transient", [True, False])
async def test_a_transient_refusal_keeps_the_queue_and_a_lasting_one_drops_it(
    make_system: MakeSystem, dead_letters: DeadLetters, transient: bool
) -> None:
    # A node shutting down refuses with transient=True: it may come back, so what is queued
    # for it waits for failure_timeout. Before, that refusal dropped the queue at once.
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (size,) = HEADER.unpack(await reader.readexactly(4))
        await reader.readexactly(size)
        writer.write(framed(encode_handshake(Refuse("this node is shutting down", transient))))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        a = await make_system()
        dropped = dead_letters(a)
        a.resolve(f"casty://t@127.0.0.1:{port}/user/x").tell(Num(1))
        await dropped.wait_count(1)
    expected = (
        RemoteDeadLetterReason.PEER_UNREACHABLE  # after failure_timeout of retries
        if transient
        else RemoteDeadLetterReason.HANDSHAKE_REFUSED  # at the first refusal
    )
    assert (dropped.messages[0].message, dropped.messages[0].reason) == (Num(1), expected)


async def test_a_lasting_refusal_keeps_its_backoff_after_the_failure_timeout(
    make_system: MakeSystem, dead_letters: DeadLetters
) -> None:
    # Before, once failure_timeout had passed, every message started a connector that dialled
    # at once: one refused dial, and two warnings, per message sent.
    dials = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal dials
        dials += 1
        (size,) = HEADER.unpack(await reader.readexactly(4))
        await reader.readexactly(size)
        writer.write(framed(encode_handshake(Refuse("system name mismatch"))))
        await writer.drain()
        writer.close()

    clock = ManualClock()
    settings = replace(FAST, failure_timeout=1.0, min_backoff=0.1, max_backoff=0.1)
    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        a = await make_system(clock=clock, settings=settings)
        dropped = dead_letters(a)
        target = a.resolve(f"casty://t@127.0.0.1:{port}/user/x")
        target.tell(Num(0))
        await dropped.wait_count(1)
        await clock.advance(2.0)  # past the failure timeout and the backoff

        def queued() -> int:
            return a.remote_statistics().peers[0].queued

        def backing_off() -> bool:  # a message waits and the connector sleeps on the clock
            return queued() > 0 and clock.pending > 0

        for n in range(1, 6):
            target.tell(Num(n))
            await wait_until(lambda n=n: backing_off() or len(dropped.messages) > n)
            if backing_off():
                break
    # One dial closes the old failure window, one opens a new one and backs off: the next
    # message waits for the backoff instead of dialling.
    assert (dials, queued()) == (3, 1)


async def test_shutdown_stays_within_its_flush_budget_when_a_peer_does_not_read(
    make_system: MakeSystem,
) -> None:
    # Before, each connection's close then waited 2 s more for the stuck peer, one after the
    # other.
    a = await make_system(settings=replace(FAST, shutdown_flush_timeout=0.5))
    async with raw_peer(a) as stuck:
        await stuck.handshake(a)  # then never reads
        target = a.resolve("casty://t@127.0.0.1:1/user/x")
        for _ in range(300):
            target.tell(Blob(b"x" * 100_000))
        await wait_until(lambda: a.remote_statistics().peers[0].queued == 0)
        started = asyncio.get_running_loop().time()
        await a.shutdown()
        took = asyncio.get_running_loop().time() - started
    assert took < 0.5 + 1.0  # the budget, and some room for a slow machine
