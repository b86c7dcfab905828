"""Local ask: sequential latency and throughput, and throughput with 100 asks in flight.

Prints two JSON lines, each the median of ``--runs`` runs (default 5):

- ``local_ask_sequential``: asks/s for one caller awaiting each reply before the next ask, with
  p50/p99 latency in microseconds; the baseline is a future resolved by a server task that takes
  requests from an ``asyncio.Queue`` (the raw round trip an ask needs). Both sides build the same
  request object (a frozen dataclass carrying the reply target), so the ratio is casty's own
  overhead.
- ``local_ask_in_flight``: replies/s with 100 callers asking concurrently; same baseline with
  100 concurrent callers.

    python benchmarks/local_ask.py [--asks N] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

from casty.actors import ActorContext, ActorRef, ActorSystem, Behavior, Behaviors

IN_FLIGHT = 100


@dataclass(frozen=True, slots=True)
class Ping:
    reply_to: ActorRef[int]


async def pong(ctx: ActorContext[Ping], msg: Ping) -> Behavior[Ping]:
    msg.reply_to.tell(1)
    return Behaviors.same()


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


async def casty_sequential(n: int) -> tuple[float, float, float]:
    async with ActorSystem(name="bench") as system:
        ref = system.spawn(Behaviors.receive(pong), "pong")
        latencies: list[int] = []
        clock = time.perf_counter_ns
        start = clock()
        for _ in range(n):
            t0 = clock()
            await system.ask(ref, Ping, timeout=5.0)
            latencies.append(clock() - t0)
        elapsed = (clock() - start) / 1e9
    latencies.sort()
    return n / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)


async def casty_in_flight(n: int) -> float:
    async with ActorSystem(name="bench") as system:
        ref = system.spawn(Behaviors.receive(pong), "pong")

        async def caller() -> None:
            for _ in range(n // IN_FLIGHT):
                await system.ask(ref, Ping, timeout=5.0)

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
        return n / (time.perf_counter() - start)


@dataclass(frozen=True, slots=True)
class Request:
    reply_to: asyncio.Future[int]


class Server:
    """The baseline: a task resolving the futures it takes from a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Request | None] = asyncio.Queue()

    async def run(self) -> None:
        while (request := await self.queue.get()) is not None:
            request.reply_to.set_result(1)

    async def request(self) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(Request(future))
        return await future


async def baseline_sequential(n: int) -> tuple[float, float, float]:
    server = Server()
    task = asyncio.create_task(server.run())
    latencies: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(n):
        t0 = clock()
        await server.request()
        latencies.append(clock() - t0)
    elapsed = (clock() - start) / 1e9
    server.queue.put_nowait(None)
    await task
    latencies.sort()
    return n / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)


async def baseline_in_flight(n: int) -> float:
    server = Server()
    task = asyncio.create_task(server.run())

    async def caller() -> None:
        for _ in range(n // IN_FLIGHT):
            await server.request()

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    rate = n / (time.perf_counter() - start)
    server.queue.put_nowait(None)
    await task
    return rate


def line(name: str, ours: float, baseline: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ours": round(ours),
        "baseline": round(baseline),
        "ratio": round(ours / baseline, 3),
        "unit": unit,
        **extra,
    }


async def main(n: int, runs: int) -> list[dict[str, Any]]:
    await casty_sequential(n // 10)  # warm up
    seq: list[tuple[float, float, float]] = []
    seq_base: list[tuple[float, float, float]] = []
    flight: list[float] = []
    flight_base: list[float] = []
    for _ in range(runs):
        seq_base.append(await baseline_sequential(n))
        seq.append(await casty_sequential(n))
        flight_base.append(await baseline_in_flight(n))
        flight.append(await casty_in_flight(n))

    def med(rows: list[tuple[float, float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    return [
        line(
            "local_ask_sequential",
            med(seq, 0),
            med(seq_base, 0),
            "asks/s",
            p50_us=round(med(seq, 1), 1),
            p99_us=round(med(seq, 2), 1),
            baseline_p50_us=round(med(seq_base, 1), 1),
            baseline_p99_us=round(med(seq_base, 2), 1),
            asks=n,
            runs=runs,
        ),
        line(
            "local_ask_in_flight",
            statistics.median(flight),
            statistics.median(flight_base),
            "replies/s",
            in_flight=IN_FLIGHT,
            asks=n,
            runs=runs,
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for row in asyncio.run(main(args.asks, args.runs)):
        print(json.dumps(row))
