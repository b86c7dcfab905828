"""Memory per idle actor: bytes traced by tracemalloc for 100,000 spawned, started actors.

Prints JSON lines (median of ``--runs`` runs, default 5), each with ``baseline`` = the bytes per
"actor" of the naive design, an asyncio task blocked on its own ``asyncio.Queue``, measured in the
same run, and ``ratio`` = ours / baseline (lower is better):

- ``actor_memory``: actors sharing one ``Behaviors.receive`` behavior (the framework's own cost);
- ``actor_memory_after_message``: the same actors after each handled one message (idle again);
- ``actor_memory_setup``: actors built by ``Behaviors.setup`` with a per-actor closure.

    python benchmarks/actor_memory.py [--actors N] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from casty.actors import ActorContext, ActorSystem, Behavior, Behaviors


def count(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
    return Behaviors.same()


def with_state(ctx: ActorContext[Any]) -> Behavior[Any]:
    seen = 0

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        nonlocal seen
        seen += 1
        return Behaviors.same()

    return Behaviors.receive(receive)


async def settle() -> None:
    """Let every scheduled actor run (each start is one loop callback)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def measure(n: int, populate: Callable[[], Awaitable[object]]) -> float:
    """Bytes per unit allocated by ``populate`` (which must keep its objects alive)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = await populate()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / n


async def casty_actors(n: int, behavior: Behavior[Any], message: bool) -> float:
    async with ActorSystem(name="memory") as system:

        async def populate() -> object:
            refs = [system.spawn(behavior, f"a{i}") for i in range(n)]
            await settle()
            if message:
                for ref in refs:
                    ref.tell("hello")
                await settle()
            del refs  # the system itself must keep the actors alive
            return None

        per_actor = await measure(n, populate)
        assert system.statistics().actors == n + 1  # + the event stream
    return per_actor


async def task_per_actor(n: int) -> float:
    tasks: list[asyncio.Task[None]] = []

    async def actor(queue: asyncio.Queue[object]) -> None:
        while True:
            await queue.get()

    async def populate() -> object:
        for _ in range(n):
            tasks.append(asyncio.create_task(actor(asyncio.Queue())))
        await settle()
        return tasks

    per_actor = await measure(n, populate)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return per_actor


async def main(n: int, runs: int) -> list[dict[str, Any]]:
    cases = {
        "actor_memory": (Behaviors.receive(count), False),
        "actor_memory_after_message": (Behaviors.receive(count), True),
        "actor_memory_setup": (Behaviors.setup(with_state), False),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    baseline: list[float] = []
    for _ in range(runs):
        baseline.append(await task_per_actor(n))
        for name, (behavior, message) in cases.items():
            results[name].append(await casty_actors(n, behavior, message))
    b = statistics.median(baseline)
    return [
        {
            "name": name,
            "ours": round(statistics.median(values)),
            "baseline": round(b),
            "ratio": round(statistics.median(values) / b, 3),
            "unit": "bytes/actor",
            "actors": n,
            "runs": runs,
        }
        for name, values in results.items()
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for row in asyncio.run(main(args.actors, args.runs)):
        print(json.dumps(row))
