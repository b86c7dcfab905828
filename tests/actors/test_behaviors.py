"""Behaviors as values: receive, setup, same, stopped, ignore, empty, unhandled, become."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from casty.actors import (
    ActorContext,
    ActorRef,
    ActorSystem,
    Behavior,
    Behaviors,
    DeadLetterReason,
    PostStop,
    Signal,
    Terminated,
)
from casty.errors import ConfigurationError
from casty.testing.wait import wait_until


@dataclass(frozen=True, slots=True)
class Add:
    amount: int


@dataclass(frozen=True, slots=True)
class Get:
    reply_to: ActorRef[int]


def counter(total: int = 0) -> Behavior[Add | Get]:
    async def receive(ctx: ActorContext[Add | Get], msg: Add | Get) -> Behavior[Add | Get]:
        match msg:
            case Add(amount):
                return counter(total + amount)
            case Get(reply_to):
                reply_to.tell(total)
        return Behaviors.same()

    return Behaviors.receive(receive)


async def test_state_lives_in_returned_behaviors(system: ActorSystem) -> None:
    ref = system.spawn(counter(), "counter")
    for amount in (1, 2, 3):
        ref.tell(Add(amount))
    assert await system.ask(ref, Get) == 6


async def test_sync_handler_works_like_async(system: ActorSystem) -> None:
    def receive(ctx: ActorContext[Get], msg: Get) -> Behavior[Get]:
        msg.reply_to.tell(42)
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "sync")
    assert await system.ask(ref, Get) == 42


async def test_setup_runs_once_per_actor_with_its_context(system: ActorSystem) -> None:
    runs: list[str] = []

    def setup(ctx: ActorContext[Get]) -> Behavior[Get]:
        runs.append(ctx.self.path)

        async def receive(ctx: ActorContext[Get], msg: Get) -> Behavior[Get]:
            msg.reply_to.tell(len(runs))
            return Behaviors.same()

        return Behaviors.receive(receive)

    behavior = Behaviors.setup(setup)  # one value, spawned twice
    a = system.spawn(behavior, "a")
    b = system.spawn(behavior, "b")
    await system.ask(a, Get)
    await system.ask(b, Get)
    await system.ask(a, Get)
    assert sorted(runs) == ["/user/a", "/user/b"]


async def test_async_setup_that_suspends_delays_messages_in_order(system: ActorSystem) -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    seen: list[object] = []

    async def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        prefix = await gate

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if isinstance(msg, Get):
                msg.reply_to.tell(list(seen))
            else:
                seen.append(f"{prefix}{msg}")
            return Behaviors.same()

        return Behaviors.receive(receive)

    ref = system.spawn(Behaviors.setup(setup), "slow-start")
    ref.tell(1)
    ref.tell(2)
    asking = asyncio.create_task(system.ask(ref, Get))
    await asyncio.sleep(0)  # a turn in which a wrong early answer would show (not a sync point)
    assert not asking.done()
    gate.set_result("m")
    assert await asking == ["m1", "m2"]


async def test_handler_that_really_awaits_keeps_message_order(system: ActorSystem) -> None:
    loop = asyncio.get_running_loop()
    gates = {1: loop.create_future(), 3: loop.create_future()}
    handled: list[int] = []

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if isinstance(msg, Get):
            msg.reply_to.tell(list(handled))
            return Behaviors.same()
        if msg in gates:
            await gates[msg]
        handled.append(msg)
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "awaiting")
    for i in range(1, 6):
        ref.tell(i)
    asking = asyncio.create_task(system.ask(ref, Get))
    for _ in range(5):  # turns in which an overtaking message would show (not a sync point)
        await asyncio.sleep(0)
    assert handled == []  # message 1 is suspended, nothing may overtake it
    gates[1].set_result(None)
    await wait_until(lambda: handled == [1, 2])  # 3 suspends in turn
    await asyncio.sleep(0)  # again a turn for 4 to overtake 3, which must not happen
    assert handled == [1, 2]
    gates[3].set_result(None)
    assert await asking == [1, 2, 3, 4, 5]
    assert system.statistics().tasks == 0  # task-less again once the mailbox is empty


async def test_handler_suspending_on_sleep_zero_can_use_task_apis(system: ActorSystem) -> None:
    async def receive(ctx: ActorContext[Get], msg: Get) -> Behavior[Get]:
        await asyncio.sleep(0)  # documented: after a real suspension the handler runs in a task
        async with asyncio.timeout(1.0):
            await asyncio.sleep(0)
        msg.reply_to.tell(asyncio.current_task() is not None)
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "task-apis")
    assert await system.ask(ref, Get) is True


async def test_same_is_a_singleton() -> None:
    assert Behaviors.same() is Behaviors.same()
    assert Behaviors.ignore() is Behaviors.ignore()


async def test_stopped_runs_post_stop_signal_then_callback(system: ActorSystem) -> None:
    events: list[str] = []
    done = asyncio.Event()

    async def on_signal(ctx: ActorContext[Any], signal: Signal) -> None:
        events.append(type(signal).__name__)

    async def post_stop() -> None:
        events.append("callback")
        done.set()

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        events.append(f"msg {msg}")
        return Behaviors.stopped(post_stop)

    ref = system.spawn(Behaviors.receive(receive, on_signal), "stopper")
    ref.tell("a")
    ref.tell("b")  # after the stop: a dead letter, never handled
    async with asyncio.timeout(2):
        await done.wait()
    assert events == ["msg a", "PostStop", "callback"]


async def test_ignore_drops_silently_and_empty_makes_dead_letters(
    system: ActorSystem, dead_letters: Any
) -> None:
    ignoring = system.spawn(Behaviors.ignore(), "ignoring")
    empty = system.spawn(Behaviors.empty(), "empty")
    ignoring.tell("quiet")
    empty.tell("loud")
    letter = await dead_letters.expect_message()
    assert (letter.message, letter.recipient, letter.reason) == (
        "loud",
        empty,
        DeadLetterReason.UNHANDLED,
    )
    assert all(d.message != "quiet" for d in dead_letters.messages)


async def test_unhandled_keeps_behavior_and_publishes_dead_letter(
    system: ActorSystem, dead_letters: Any
) -> None:
    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if isinstance(msg, Get):
            msg.reply_to.tell("still here")
            return Behaviors.same()
        return Behaviors.unhandled()

    ref = system.spawn(Behaviors.receive(receive), "picky")
    ref.tell(123)
    letter = await dead_letters.expect_message()
    assert letter.message == 123 and letter.reason == DeadLetterReason.UNHANDLED
    assert await system.ask(ref, Get) == "still here"


async def test_returning_a_non_behavior_is_a_failure_that_stops_the_actor(
    system: ActorSystem, probe: Any
) -> None:
    async def receive(ctx: ActorContext[Any], msg: Any) -> Any:
        return None  # forgot `return Behaviors.same()`

    watcher = probe(system, "watcher")
    ref = system.spawn(Behaviors.receive(receive), "forgetful")

    def watch(ctx: ActorContext[Any]) -> Behavior[Any]:
        ctx.watch(ref)

        def forward(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            watcher.ref.tell(msg)
            return Behaviors.same()

        return Behaviors.receive(forward)

    system.spawn(Behaviors.setup(watch), "watch-forgetful")
    ref.tell("x")
    assert await watcher.expect_message() == Terminated(ref)


async def test_become_through_setup_in_a_handler(system: ActorSystem) -> None:
    def second(ctx: ActorContext[Get]) -> Behavior[Get]:
        async def receive(ctx: ActorContext[Get], msg: Get) -> Behavior[Get]:
            msg.reply_to.tell("second")
            return Behaviors.same()

        return Behaviors.receive(receive)

    async def first(ctx: ActorContext[Get], msg: Get) -> Behavior[Get]:
        msg.reply_to.tell("first")
        return Behaviors.setup(second)

    ref = system.spawn(Behaviors.receive(first), "becomes")
    assert await system.ask(ref, Get) == "first"
    assert await system.ask(ref, Get) == "second"
    assert await system.ask(ref, Get) == "second"


async def test_post_stop_signal_sees_final_state(system: ActorSystem) -> None:
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def counting(n: int) -> Behavior[Any]:
        def on_signal(ctx: ActorContext[Any], signal: Signal) -> None:
            if isinstance(signal, PostStop):
                seen.set_result(n)

        def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if isinstance(msg, Get):
                msg.reply_to.tell(n)
                return Behaviors.same()
            return counting(n + 1)

        return Behaviors.receive(receive, on_signal)

    ref = system.spawn(counting(0), "final")
    ref.tell(1)
    ref.tell(2)
    assert await system.ask(ref, Get) == 2
    await system.stop(ref)
    assert await seen == 2


@pytest.mark.parametrize("bad", [Behaviors.same(), Behaviors.unhandled(), "not a behavior"])
async def test_spawning_a_non_starting_behavior_raises(system: ActorSystem, bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        system.spawn(bad, "bad")
