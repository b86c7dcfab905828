"""Passivation on real TCP: idle entities stop and restart; entities ask to be passivated."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sharding_harness import (
    Where,
    WhereIs,
    hosted_entities,
    start_cluster,
    stop_all,
    wait_until,
    where_entity,
)

from casty import ActorContext, ActorSystem, Behavior, Behaviors, PostStop, ShardEnvelope
from casty.errors import ShardingError
from casty.sharding import passivate, wait_registered

pytestmark = pytest.mark.slow


def tracked(events: list[tuple[str, str, Any]]) -> Any:
    """Entities that log ``(entity_id, "start" | "msg" | "stop", detail)``.

    ``"bye"`` makes the entity call ``passivate(ctx)``; ``"bye-with"`` passivates it with the
    stop message ``"stop-now"``, which it answers by stopping.
    """

    def factory(entity_id: str) -> Behavior[Any]:
        def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
            events.append((entity_id, "start", None))

            async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                events.append((entity_id, "msg", msg))
                if msg == "bye":
                    passivate(ctx)
                    await asyncio.sleep(0.05)  # busy a while: later messages wait in the region
                elif msg == "bye-with":
                    passivate(ctx, "stop-now")
                elif msg == "stop-now":
                    return Behaviors.stopped()
                return Behaviors.same()

            def on_signal(ctx: ActorContext[Any], signal: Any) -> None:
                if isinstance(signal, PostStop):
                    events.append((entity_id, "stop", None))

            return Behaviors.receive(receive, on_signal)

        return Behaviors.setup(setup)

    return factory


async def test_idle_entities_are_passivated_and_restart_on_the_next_message() -> None:
    nodes = await start_cluster(2)
    try:
        regions = [
            n.system.spawn(Behaviors.sharded(where_entity, passivate_after=0.2), "idle")
            for n in nodes
        ]
        system = nodes[0].system
        first: Where = await system.ask(regions[0], lambda r: ShardEnvelope("a", WhereIs(r)))
        host = next(i for i, n in enumerate(nodes) if n.system.address == first.node)

        async def gone() -> bool:
            return "a" not in await hosted_entities(nodes[host].system, regions[host])

        await wait_until(gone, timeout=5.0, interval=0.05)
        again: Where = await system.ask(regions[0], lambda r: ShardEnvelope("a", WhereIs(r)))
        assert again.node == first.node
        assert again.serial != first.serial  # a new incarnation
    finally:
        await stop_all(nodes, leave=False)


async def test_an_entity_asks_to_be_passivated_and_nothing_is_lost() -> None:
    nodes = await start_cluster(2)
    events: list[tuple[str, str, Any]] = []
    try:
        behavior = Behaviors.sharded(tracked(events), passivate_after=None)
        regions = [n.system.spawn(behavior, "polite") for n in nodes]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)

        def received() -> list[Any]:
            return [d for e, kind, d in events if e == "p" and kind == "msg"]

        def kinds() -> list[str]:
            return [kind for e, kind, _ in events if e == "p"]

        for msg in ("one", "bye"):
            regions[1].tell(ShardEnvelope("p", msg))
        await wait_until(lambda: "bye" in received())
        for msg in ("two", "three"):  # held by the region until the entity has stopped
            regions[1].tell(ShardEnvelope("p", msg))
        await wait_until(lambda: kinds().count("stop") == 1)
        await wait_until(lambda: received()[-2:] == ["two", "three"])
        assert kinds()[:6] == ["start", "msg", "msg", "stop", "start", "msg"]
        for msg in ("bye-with", "four", "five"):
            regions[1].tell(ShardEnvelope("p", msg))
        # Messages queued before the stop message are handled first; then it stops itself.
        await wait_until(lambda: kinds().count("stop") == 2)
        regions[0].tell(ShardEnvelope("p", "six"))
        expected = ["one", "bye", "two", "three", "bye-with", "four", "five", "stop-now", "six"]
        await wait_until(lambda: received() == expected)
        assert kinds().count("start") == 3
        assert kinds() == [
            "start", "msg", "msg", "stop",
            "start", *["msg"] * 6, "stop",
            "start", "msg",
        ]  # fmt: skip
    finally:
        await stop_all(nodes, leave=False)


async def test_passivate_outside_a_sharded_entity_raises() -> None:
    failures: list[BaseException] = []

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        try:
            passivate(ctx)
        except ShardingError as exc:
            failures.append(exc)
        return Behaviors.same()

    async with ActorSystem("plain") as system:
        system.spawn(Behaviors.receive(receive), "lonely").tell("x")
        await wait_until(lambda: bool(failures))
    assert "not a sharded entity" in str(failures[0])
