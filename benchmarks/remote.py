"""Remoting figures: remote tell throughput, sequential remote ask, 100 asks in flight.

Two processes on loopback: this one sends, a child process serves a `RemoteActorSystem` with a
``sink`` actor (counts ``Work`` messages, answers ``Count`` with the total) and an ``echo``
actor (answers ``Ping`` with ``Pong``), plus the raw baseline server. Run once over TCP and
once over TLS (mutual authentication, a throwaway CA from `casty.certs`).

Figures, each the median of ``--runs`` runs, ours beside the baseline measured in the same run:

- ``remote_tell`` (msgs/s): ``--tells`` messages ``Work(n, text)`` told to the remote sink,
  timed until the sink's answer to a ``Count`` ask (which it handles after every message, as
  per-peer order guarantees). The sender yields to the loop every 1,000 tells and waits while
  the peer's outbound queue holds more than 20,000 messages. Baseline: a plain asyncio stream
  carrying one length-prefixed msgpack frame ``[0, n, text]`` per message, packed one by one
  and written 1,000 frames per ``write`` + ``drain``; the baseline server parses frames out of
  ``data_received`` and unpacks each (a receiver that did not decode would not be receiving
  messages).
- ``remote_ask_p50`` / ``remote_ask_p99`` (µs): sequential ``system.ask`` of ``Ping`` to the
  remote echo actor. Baseline: one msgpack frame written, echoed by the server's
  ``data_received``, awaited on a future (ratio = baseline / ours).
- ``remote_ask_in_flight`` (replies/s): 100 concurrent callers asking in a loop. Baseline: 100
  concurrent callers on the raw stream.

Prints one JSON line per figure, ``{"name", "transport", "ours", "baseline", "ratio", "unit"}``
(ratio above 1 is better for us), then ``tls_vs_tcp_*`` lines comparing our TLS figure to our
TCP figure (``ours`` = TLS, ``baseline`` = TCP).

Usage: ``python benchmarks/remote.py [--tells 200000] [--asks 3000] [--runs 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import struct
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import msgpack
from _tls_bench import ssl_contexts, transport_for

from casty.actors import ActorContext, ActorRef, Behavior, Behaviors
from casty.certs import create_ca, create_node_certificate
from casty.remote import RemoteActorSystem
from casty.serializers.msgpack import MsgpackSerializer

HEADER = struct.Struct(">I")
TEXT = "payload of a small remote message"
IN_FLIGHT = 100
CHUNK = 1_000
MAX_QUEUED = 20_000


@dataclass(frozen=True, slots=True)
class Work:
    n: int
    text: str


@dataclass(frozen=True, slots=True)
class Count:
    reply_to: ActorRef[int]


@dataclass(frozen=True, slots=True)
class Ping:
    n: int
    text: str
    reply_to: ActorRef[Pong]


@dataclass(frozen=True, slots=True)
class Pong:
    n: int


def serializer() -> MsgpackSerializer:
    """Pinned names: the two processes know these classes under different module names."""
    result = MsgpackSerializer()
    for cls in (Work, Count, Ping, Pong):
        result.register(cls, name=f"bench.{cls.__name__}")
    return result


# ---- the serving process ---------------------------------------------------------------------


def sink() -> Behavior[Any]:
    count = 0

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        nonlocal count
        if type(msg) is Work:
            count += 1
        elif type(msg) is Count:
            msg.reply_to.tell(count)
            count = 0
        return Behaviors.same()

    return Behaviors.receive(receive)


def echo(ctx: ActorContext[Ping], msg: Ping) -> Behavior[Ping]:
    msg.reply_to.tell(Pong(msg.n))
    return Behaviors.same()


class RawServer(asyncio.Protocol):
    """The baseline: frames parsed out of ``data_received``, each unpacked; replies batched."""

    def __init__(self) -> None:
        self.buffer = b""
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        pos, end = 0, len(buffer)
        out: list[bytes] = []
        unpack = msgpack.unpackb
        while end - pos >= 4:
            (size,) = HEADER.unpack_from(buffer, pos)
            if pos + 4 + size > end:
                break
            frame = buffer[pos + 4 : pos + 4 + size]
            pos += 4 + size
            item = unpack(frame)
            if item[0] == 0:
                self.count += 1
            elif item[0] == 1:
                reply = msgpack.packb([1, self.count])
                out += (HEADER.pack(len(reply)), reply)
                self.count = 0
            else:
                out += (HEADER.pack(size), frame)
        self.buffer = buffer[pos:]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


def serve(kind: str, pki: str, ports: Queue[tuple[int, int]]) -> None:
    async def main() -> None:
        system = RemoteActorSystem(
            "bench", transport=transport_for(kind, Path(pki)), serializer=serializer()
        )
        async with system:
            system.spawn(sink(), "sink")
            system.spawn(Behaviors.receive(echo), "echo")
            server_ssl = ssl_contexts(Path(pki))[0] if kind == "tls" else None
            raw = await asyncio.get_running_loop().create_server(
                RawServer, "127.0.0.1", 0, ssl=server_ssl
            )
            ports.put((system.node_address.port, raw.sockets[0].getsockname()[1]))
            await asyncio.Event().wait()  # until the parent terminates this process

    asyncio.run(main())


# ---- the measuring process -------------------------------------------------------------------


class RawClient(asyncio.Protocol):
    """Resolves one future per reply frame, in order (the server answers in order)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        pos, end = 0, len(buffer)
        while end - pos >= 4:
            (size,) = HEADER.unpack_from(buffer, pos)
            if pos + 4 + size > end:
                break
            item = msgpack.unpackb(buffer[pos + 4 : pos + 4 + size])
            pos += 4 + size
            self.waiting.popleft().set_result(item)
        self.buffer = buffer[pos:]

    async def request(self, frame: bytes) -> Any:
        assert self.transport is not None
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.transport.write(HEADER.pack(len(frame)) + frame)
        return await future

    async def drain(self) -> None:
        """Wait while the transport holds more than its high-water mark."""
        assert self.transport is not None
        while self.transport.get_write_buffer_size() > 1 << 20:
            await asyncio.sleep(0.0005)


def queued(system: RemoteActorSystem) -> int:
    return sum(peer.queued for peer in system.remote_statistics().peers)


async def ours_tell(system: RemoteActorSystem, ref: ActorRef[Any], n: int) -> float:
    message = Work(7, TEXT)
    tell = ref.tell
    start = time.perf_counter()
    for _ in range(n // CHUNK):
        for _ in range(CHUNK):
            tell(message)
        await asyncio.sleep(0)
        while queued(system) > MAX_QUEUED:
            await asyncio.sleep(0.0005)
    count = await system.ask(ref, Count, timeout=120.0)
    elapsed = time.perf_counter() - start
    assert count == n // CHUNK * CHUNK, count
    return int(count) / elapsed


async def raw_tell(client: RawClient, n: int) -> float:
    assert client.transport is not None
    pack, header = msgpack.packb, HEADER.pack
    start = time.perf_counter()
    for _ in range(n // CHUNK):
        parts: list[bytes] = []
        for _ in range(CHUNK):
            frame = pack([0, 7, TEXT])  # one message packed at a time, as a sender must
            parts += (header(len(frame)), frame)
        client.transport.write(b"".join(parts))
        await client.drain()
        await asyncio.sleep(0)
    _, count = await client.request(msgpack.packb([1]))
    elapsed = time.perf_counter() - start
    assert count == n // CHUNK * CHUNK, count
    return int(count) / elapsed


async def ours_asks(system: RemoteActorSystem, ref: ActorRef[Any], n: int) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await system.ask(ref, partial(Ping, i, TEXT), timeout=5.0)
        samples.append(time.perf_counter() - start)
    return samples


async def raw_asks(client: RawClient, n: int) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await client.request(msgpack.packb([2, i, TEXT]))
        samples.append(time.perf_counter() - start)
    return samples


async def ours_in_flight(system: RemoteActorSystem, ref: ActorRef[Any], n: int) -> float:
    per_caller = n // IN_FLIGHT

    async def caller() -> None:
        for i in range(per_caller):
            await system.ask(ref, partial(Ping, i, TEXT), timeout=10.0)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    return per_caller * IN_FLIGHT / (time.perf_counter() - start)


async def raw_in_flight(client: RawClient, n: int) -> float:
    per_caller = n // IN_FLIGHT

    async def caller() -> None:
        for i in range(per_caller):
            await client.request(msgpack.packb([2, i, TEXT]))

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    return per_caller * IN_FLIGHT / (time.perf_counter() - start)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    kind: str, pki: Path, ports: tuple[int, int], args: argparse.Namespace
) -> dict[str, float]:
    node_port, raw_port = ports
    client_ssl = ssl_contexts(pki)[1] if kind == "tls" else None
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(RawClient, "127.0.0.1", raw_port, ssl=client_ssl)
    results: dict[str, list[float]] = {}

    def record(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    system = RemoteActorSystem("bench", transport=transport_for(kind, pki), serializer=serializer())
    async with system:
        root = f"casty://bench@127.0.0.1:{node_port}"
        sink_ref = system.resolve(root + "/user/sink")
        echo_ref = system.resolve(root + "/user/echo")
        await ours_tell(system, sink_ref, args.tells // 10)  # warm up both paths
        await raw_tell(client, args.tells // 10)
        await ours_in_flight(system, echo_ref, IN_FLIGHT * 10)
        await raw_in_flight(client, IN_FLIGHT * 10)
        for _ in range(args.runs):
            record("tell_ours", await ours_tell(system, sink_ref, args.tells))
            record("tell_raw", await raw_tell(client, args.tells))
            ours = await ours_asks(system, echo_ref, args.asks)
            raw = await raw_asks(client, args.asks)
            record("p50_ours", percentile(ours, 0.5) * 1e6)
            record("p50_raw", percentile(raw, 0.5) * 1e6)
            record("p99_ours", percentile(ours, 0.99) * 1e6)
            record("p99_raw", percentile(raw, 0.99) * 1e6)
            record("flight_ours", await ours_in_flight(system, echo_ref, args.in_flight))
            record("flight_raw", await raw_in_flight(client, args.in_flight))
    assert client.transport is not None
    client.transport.close()
    return {key: statistics.median(values) for key, values in results.items()}


def line(name: str, kind: str, ours: float, baseline: float, unit: str, higher: bool) -> None:
    ratio = ours / baseline if higher else baseline / ours
    print(
        json.dumps(
            {
                "name": name,
                "transport": kind,
                "ours": round(ours, 1),
                "baseline": round(baseline, 1),
                "ratio": round(ratio, 3),
                "unit": unit,
            }
        ),
        flush=True,
    )


FIGURES = (
    ("remote_tell", "tell", "msgs/s", True),
    ("remote_ask_p50", "p50", "us", False),
    ("remote_ask_p99", "p99", "us", False),
    ("remote_ask_in_flight", "flight", "replies/s", True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tells", type=int, default=200_000)
    parser.add_argument("--asks", type=int, default=3_000)
    parser.add_argument("--in-flight", type=int, default=30_000, help="replies per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--transports", default="tcp,tls")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as home:
        pki = Path(home)
        create_ca(pki)
        create_node_certificate("node", pki)
        for kind in args.transports.split(","):
            ports: Queue[tuple[int, int]] = ctx.Queue()
            server = ctx.Process(target=serve, args=(kind, home, ports), daemon=True)
            server.start()
            try:
                medians = asyncio.run(measure(kind, pki, ports.get(timeout=60), args))
            finally:
                server.terminate()
                server.join()
            figures[kind] = medians
            for name, key, unit, higher in FIGURES:
                line(name, kind, medians[f"{key}_ours"], medians[f"{key}_raw"], unit, higher)
    if {"tcp", "tls"} <= figures.keys():
        for name, key, unit, higher in FIGURES:
            tls, tcp = figures["tls"][f"{key}_ours"], figures["tcp"][f"{key}_ours"]
            line(f"tls_vs_tcp_{name[7:]}", "tls/tcp", tls, tcp, unit, higher)


if __name__ == "__main__":
    main()
