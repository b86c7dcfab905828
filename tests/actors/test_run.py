"""How an actor's run handles a batch of queued messages: handlers that return at once are
called without a coroutine, the others finish in the drain coroutine; either way one message
at a time, in order, supervised, never re-entered."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from casty.actors import (
    ActorContext,
    ActorSystem,
    Behavior,
    Behaviors,
    DeadLetterReason,
    SupervisorStrategy,
)
from casty.testing.wait import wait_until


class Guarded:
    """Records what a handler sees and whether it was ever entered while already running."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.running = False
        self.reentered = False

    def enter(self, msg: Any) -> None:
        if self.running:
            self.reentered = True
        self.running = True
        self.seen.append(msg)

    def leave(self) -> None:
        self.running = False


async def test_sync_and_async_results_interleave_in_order(system: ActorSystem) -> None:
    guard = Guarded()

    def receive(ctx: ActorContext[int], n: int) -> Any:
        guard.enter(n)
        if n % 3 == 1:

            async def later() -> Behavior[int]:
                await asyncio.sleep(0)  # really suspends: the rest waits for this message
                guard.seen.append(f"{n} done")
                guard.leave()
                return Behaviors.same()

            return later()
        guard.leave()
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "mixed")
    for n in range(8):
        ref.tell(n)
    await wait_until(lambda: len(guard.seen) == 11)
    assert guard.seen == [0, 1, "1 done", 2, 3, 4, "4 done", 5, 6, 7, "7 done"]
    assert not guard.reentered


async def test_a_tell_to_itself_is_queued_behind_the_batch_not_handled_inside(
    system: ActorSystem,
) -> None:
    guard = Guarded()

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        guard.enter(msg)
        if type(msg) is int:
            ctx.self.tell(f"after {msg}")
        guard.leave()
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "self-teller")
    for n in range(3):
        ref.tell(n)
    await wait_until(lambda: len(guard.seen) == 6)
    assert guard.seen == [0, 1, 2, "after 0", "after 1", "after 2"]
    assert not guard.reentered


async def test_a_tell_to_an_idle_actor_from_a_handler_runs_after_the_handler(
    system: ActorSystem,
) -> None:
    order: list[str] = []

    def second(ctx: ActorContext[str], msg: str) -> Behavior[str]:
        order.append(f"second got {msg}")
        return Behaviors.same()

    target = system.spawn(Behaviors.receive(second), "second")

    def first(ctx: ActorContext[str], msg: str) -> Behavior[str]:
        target.tell(msg)
        order.append(f"first handled {msg}")
        return Behaviors.same()

    system.spawn(Behaviors.receive(first), "first").tell("x")
    await wait_until(lambda: len(order) == 2)
    assert order == ["first handled x", "second got x"]


async def test_a_failure_mid_batch_is_supervised_and_the_rest_follows_in_order(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[int, int]] = []
    starts: list[int] = []

    def worker() -> Behavior[int]:
        def setup(ctx: ActorContext[int]) -> Behavior[int]:
            starts.append(len(starts))
            incarnation = len(starts)

            def receive(ctx: ActorContext[int], n: int) -> Behavior[int]:
                if n == 2:
                    raise ValueError("boom")
                seen.append((incarnation, n))
                return Behaviors.same()

            return Behaviors.receive(receive)

        return Behaviors.setup(setup)

    caplog.set_level(logging.CRITICAL, logger="casty.actors")
    ref = system.spawn(Behaviors.supervise(worker(), SupervisorStrategy.restart()), "worker")
    for n in range(5):
        ref.tell(n)
    await wait_until(lambda: len(seen) == 4)
    assert seen == [(1, 0), (1, 1), (2, 3), (2, 4)]


async def test_a_new_behavior_mid_batch_handles_the_next_message(system: ActorSystem) -> None:
    seen: list[str] = []

    def shouting(ctx: ActorContext[str], msg: str) -> Behavior[str]:
        seen.append(msg.upper())
        return Behaviors.same()

    def quiet(ctx: ActorContext[str], msg: str) -> Behavior[str]:
        seen.append(msg)
        return Behaviors.receive(shouting) if msg == "switch" else Behaviors.same()

    ref = system.spawn(Behaviors.receive(quiet), "switcher")
    for msg in ("a", "switch", "b", "c"):
        ref.tell(msg)
    await wait_until(lambda: len(seen) == 4)
    assert seen == ["a", "switch", "B", "C"]


async def test_stopping_mid_batch_turns_the_rest_into_dead_letters(
    system: ActorSystem, dead_letters: Any
) -> None:
    seen: list[int] = []

    def receive(ctx: ActorContext[int], n: int) -> Behavior[int]:
        seen.append(n)
        return Behaviors.stopped() if n == 1 else Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "stopper")
    for n in range(4):
        ref.tell(n)
    letters = await dead_letters.expect(2)
    assert seen == [0, 1]
    assert [(d.message, d.reason) for d in letters] == [
        (2, DeadLetterReason.RECIPIENT_STOPPED),
        (3, DeadLetterReason.RECIPIENT_STOPPED),
    ]


async def test_a_batch_longer_than_the_throughput_leaves_turns_to_others() -> None:
    async with ActorSystem(name="small", throughput=2) as system:
        order: list[str] = []

        def named(name: str) -> Behavior[int]:
            def receive(ctx: ActorContext[int], n: int) -> Behavior[int]:
                order.append(f"{name}{n}")
                return Behaviors.same()

            return Behaviors.receive(receive)

        a = system.spawn(named("a"), "a")
        b = system.spawn(named("b"), "b")
        a.tell(-1)
        b.tell(-1)
        await wait_until(lambda: len(order) == 2)  # both started
        order.clear()
        for n in range(4):
            a.tell(n)
        for n in range(2):
            b.tell(n)
        await wait_until(lambda: len(order) == 6)
        assert order == ["a0", "a1", "b0", "b1", "a2", "a3"]
