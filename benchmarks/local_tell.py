"""Local tell throughput: 1,000,000 messages to one actor vs. a raw asyncio.Queue handoff.

Prints one JSON line: messages/s for casty (``ours``), for an ``asyncio.Queue`` handed from a
producer task to a consumer task (``baseline``, measured in the same run) and ``ours/baseline``.
Each figure is the median of ``--runs`` runs (default 5).

    python benchmarks/local_tell.py [--messages N] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from casty.actors import ActorContext, ActorSystem, Behavior, Behaviors


async def casty_tell(n: int) -> float:
    """Messages per second for ``n`` tells to one actor, until the last one is handled."""
    loop = asyncio.get_running_loop()
    async with ActorSystem(name="bench") as system:
        done: asyncio.Future[None] = loop.create_future()
        count = 0

        async def receive(ctx: ActorContext[int], msg: int) -> Behavior[int]:
            nonlocal count
            count += 1
            if count == n:
                done.set_result(None)
            return Behaviors.same()

        ref = system.spawn(Behaviors.receive(receive), "sink")
        start = time.perf_counter()
        for i in range(n):
            ref.tell(i)
        await done
        return n / (time.perf_counter() - start)


async def queue_handoff(n: int) -> float:
    """Messages per second for ``n`` items put by one task and got by another."""
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def produce() -> None:
        for i in range(n):
            await queue.put(i)

    async def consume() -> None:
        for _ in range(n):
            await queue.get()

    start = time.perf_counter()
    await asyncio.gather(consume(), produce())
    return n / (time.perf_counter() - start)


async def main(n: int, runs: int) -> dict[str, Any]:
    ours: list[float] = []
    baseline: list[float] = []
    await casty_tell(n // 10)  # warm up
    for _ in range(runs):
        baseline.append(await queue_handoff(n))
        ours.append(await casty_tell(n))
    o, b = statistics.median(ours), statistics.median(baseline)
    return {
        "name": "local_tell",
        "ours": round(o),
        "baseline": round(b),
        "ratio": round(o / b, 3),
        "unit": "msgs/s",
        "messages": n,
        "runs": runs,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.messages, args.runs))))
