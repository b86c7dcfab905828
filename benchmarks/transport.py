"""Raw transport figures: frames/s and round-trip latency, ours beside a plain asyncio stream.

Two processes on loopback: this one sends, a child process receives. For each transport (tcp,
tls) and each run it measures

- ``frames_per_s``: N small frames sent in batches of ``--batch`` per write (ours: ``send``
  x batch, then ``drain``; baseline: each frame length-prefixed, the batch joined into one
  ``StreamWriter.write``, then ``drain``) until the receiver acknowledges the last one;
- ``round_trip_us``: sequential request/response of one small frame (p50 and p99; baseline:
  ``write`` + ``readexactly`` on a plain asyncio stream, echoed by a stream task, as our
  listener's handler task echoes).

The throughput baseline server parses frames out of ``data_received`` like ours, so the
comparison is of the connection machinery. Prints one JSON line per figure with the median
over ``--runs``:
``{"figure", "transport", "ours", "baseline", "ratio"}`` (ratio = ours / baseline for rates,
baseline / ours for latencies, so above 1 is better for us), and finally the TLS / TCP ratio
of our figures.

Usage: ``python benchmarks/transport.py [--frames 300000] [--runs 5] [--payload 52]``
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
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from _tls_bench import ssl_contexts, transport_for

from casty.abc import Address, Connection
from casty.certs import create_ca, create_node_certificate

END = b"END"
DONE = b"DONE"
HEADER = struct.Struct(">I")


# ---- the receiving process -------------------------------------------------------------------


async def our_handler(connection: Connection) -> None:
    """Echo frames of a round-trip run; count a throughput run until END, then answer DONE."""
    count = 0
    async for frame in connection:
        if frame == END:
            connection.send(DONE + str(count).encode())
            count = 0
        elif frame[:1] == b"P":
            connection.send(frame)
        else:
            count += 1


class RawServer(asyncio.Protocol):
    """The baseline receiver: frames parsed out of ``data_received``, same replies as ours."""

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
        assert self.transport is not None
        while end - pos >= 4:
            (size,) = HEADER.unpack_from(buffer, pos)
            if pos + 4 + size > end:
                break
            frame = buffer[pos + 4 : pos + 4 + size]
            pos += 4 + size
            if frame == END:
                reply = DONE + str(self.count).encode()
                self.transport.write(HEADER.pack(len(reply)) + reply)
                self.count = 0
            elif frame[:1] == b"P":
                self.transport.write(HEADER.pack(len(frame)) + frame)
            else:
                self.count += 1
        self.buffer = buffer[pos:]


async def stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The round-trip baseline: a plain asyncio stream task echoing each frame."""
    try:
        while True:
            header = await reader.readexactly(4)
            writer.write(header + await reader.readexactly(HEADER.unpack(header)[0]))
    except asyncio.IncompleteReadError:
        writer.close()


def serve(kind: str, pki: str, ports: Queue[tuple[int, int, int]]) -> None:
    async def main() -> None:
        ours = await transport_for(kind, Path(pki)).listen(Address("127.0.0.1", 0), our_handler)
        server_ssl = ssl_contexts(Path(pki))[0] if kind == "tls" else None
        raw = await asyncio.get_running_loop().create_server(
            RawServer, "127.0.0.1", 0, ssl=server_ssl
        )
        echo = await asyncio.start_server(stream_echo, "127.0.0.1", 0, ssl=server_ssl)
        ports.put(
            (
                ours.address.port,
                raw.sockets[0].getsockname()[1],
                echo.sockets[0].getsockname()[1],
            )
        )
        await asyncio.Event().wait()  # until the parent terminates this process

    asyncio.run(main())


# ---- the sending process ---------------------------------------------------------------------


async def ours_throughput(connection: Connection, frames: int, batch: int, payload: bytes) -> float:
    start = time.perf_counter()
    for _ in range(frames // batch):
        for _ in range(batch):
            connection.send(payload)
        await connection.drain()
    connection.send(END)
    reply = await connection.receive()
    elapsed = time.perf_counter() - start
    assert reply == DONE + str(frames // batch * batch).encode(), reply
    return frames // batch * batch / elapsed


async def raw_throughput(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    frames: int,
    batch: int,
    payload: bytes,
) -> float:
    pack = HEADER.pack
    batch_payloads = [payload] * batch
    start = time.perf_counter()
    for _ in range(frames // batch):
        # Each message framed on its own, as a real sender must, joined into one write.
        writer.write(
            b"".join([part for item in batch_payloads for part in (pack(len(item)), item)])
        )
        await writer.drain()
    writer.write(HEADER.pack(len(END)) + END)
    (size,) = HEADER.unpack(await reader.readexactly(4))
    reply = await reader.readexactly(size)
    elapsed = time.perf_counter() - start
    assert reply == DONE + str(frames // batch * batch).encode(), reply
    return frames // batch * batch / elapsed


async def ours_round_trips(connection: Connection, count: int, payload: bytes) -> list[float]:
    ping = b"P" + payload[1:]
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        connection.send(ping)
        await connection.receive()
        samples.append(time.perf_counter() - start)
    return samples


async def raw_round_trips(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: int, payload: bytes
) -> list[float]:
    ping = b"P" + payload[1:]
    framed = HEADER.pack(len(ping)) + ping
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        writer.write(framed)
        (size,) = HEADER.unpack(await reader.readexactly(4))
        await reader.readexactly(size)
        samples.append(time.perf_counter() - start)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    kind: str, pki: Path, ports: tuple[int, int, int], args: argparse.Namespace
) -> Any:
    payload = b"x" * args.payload
    connection = await transport_for(kind, pki).connect(Address("127.0.0.1", ports[0]))
    client_ssl = ssl_contexts(pki)[1] if kind == "tls" else None
    reader, writer = await asyncio.open_connection("127.0.0.1", ports[1], ssl=client_ssl)
    echo_reader, echo_writer = await asyncio.open_connection("127.0.0.1", ports[2], ssl=client_ssl)
    results: dict[str, list[float]] = {
        k: [] for k in ("ours", "raw", "ours50", "raw50", "ours99", "raw99")
    }
    await ours_throughput(connection, args.frames // 10, args.batch, payload)  # warm up
    await raw_throughput(reader, writer, args.frames // 10, args.batch, payload)
    for _ in range(args.runs):
        results["ours"].append(await ours_throughput(connection, args.frames, args.batch, payload))
        results["raw"].append(
            await raw_throughput(reader, writer, args.frames, args.batch, payload)
        )
        ours = await ours_round_trips(connection, args.round_trips, payload)
        raw = await raw_round_trips(echo_reader, echo_writer, args.round_trips, payload)
        results["ours50"].append(percentile(ours, 0.5) * 1e6)
        results["raw50"].append(percentile(raw, 0.5) * 1e6)
        results["ours99"].append(percentile(ours, 0.99) * 1e6)
        results["raw99"].append(percentile(raw, 0.99) * 1e6)
    await connection.aclose()
    writer.close()
    echo_writer.close()
    return {key: statistics.median(values) for key, values in results.items()}


def report(figure: str, kind: str, ours: float, baseline: float, higher_is_better: bool) -> None:
    ratio = ours / baseline if higher_is_better else baseline / ours
    line = {
        "figure": figure,
        "transport": kind,
        "ours": round(ours, 1),
        "baseline": round(baseline, 1),
        "ratio": round(ratio, 3),
    }
    print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--round-trips", type=int, default=5_000)
    parser.add_argument("--payload", type=int, default=52, help="frame size in bytes")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--transports", default="tcp,tls")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home:
        pki = Path(home)
        create_ca(pki)
        create_node_certificate("node", pki)
        for kind in args.transports.split(","):
            ports: Queue[tuple[int, int, int]] = ctx.Queue()
            server = ctx.Process(target=serve, args=(kind, home, ports), daemon=True)
            server.start()
            try:
                medians = asyncio.run(measure(kind, pki, ports.get(timeout=30), args))
            finally:
                server.terminate()
                server.join()
            figures[kind] = medians
            report("frames_per_s", kind, medians["ours"], medians["raw"], True)
            report("round_trip_p50_us", kind, medians["ours50"], medians["raw50"], False)
            report("round_trip_p99_us", kind, medians["ours99"], medians["raw99"], False)
    if {"tcp", "tls"} <= figures.keys():
        tcp, tls = figures["tcp"], figures["tls"]
        print(
            json.dumps(
                {
                    "figure": "tls_vs_tcp",
                    "frames_per_s": round(tls["ours"] / tcp["ours"], 3),
                    "round_trip_p50": round(tcp["ours50"] / tls["ours50"], 3),
                }
            )
        )


if __name__ == "__main__":
    main()
