"""Request/reply: system.ask and ctx.ask, timeouts, stopped targets, late replies."""

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
    StashBuffer,
)
from casty.errors import (
    ActorStopped,
    AskTimeout,
    ConfigurationError,
    MailboxFull,
    StashOverflow,
    UnhandledMessage,
)
from casty.testing.clock import ManualClock
from casty.testing.wait import wait_until


@dataclass(frozen=True, slots=True)
class Echo:
    text: str
    reply_to: ActorRef[str]


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the reply ref; answer only when told Release."""

    reply_to: ActorRef[str]


@dataclass(frozen=True, slots=True)
class Release:
    text: str


def echo() -> Behavior[Echo]:
    async def receive(ctx: ActorContext[Echo], msg: Echo) -> Behavior[Echo]:
        msg.reply_to.tell(msg.text.upper())
        return Behaviors.same()

    return Behaviors.receive(receive)


def holder(held: list[ActorRef[str]]) -> Behavior[Hold | Release]:
    async def receive(ctx: ActorContext[Hold | Release], msg: Hold | Release) -> Behavior[Any]:
        match msg:
            case Hold(reply_to):
                held.append(reply_to)
            case Release(text):
                for ref in held:
                    ref.tell(text)
        return Behaviors.same()

    return Behaviors.receive(receive)


async def test_ask_returns_the_reply(system: ActorSystem) -> None:
    ref = system.spawn(echo(), "echo")
    assert await system.ask(ref, lambda r: Echo("hi", r), timeout=1.0) == "HI"


async def test_many_concurrent_asks_each_get_their_reply(system: ActorSystem) -> None:
    ref = system.spawn(echo(), "echo")
    words = [f"w{i}" for i in range(200)]
    replies = await asyncio.gather(*(system.ask(ref, lambda r, w=w: Echo(w, r)) for w in words))
    assert replies == [w.upper() for w in words]


async def test_ask_times_out_on_the_system_clock(
    manual_system: ActorSystem, clock: ManualClock
) -> None:
    ref = manual_system.spawn(Behaviors.ignore(), "silent")
    asking = asyncio.create_task(manual_system.ask(ref, lambda r: Echo("x", r), timeout=3.0))
    await clock.advance(2.9)
    assert not asking.done()
    await clock.advance(0.1)
    with pytest.raises(AskTimeout, match=r"within 3\.0 s"):
        await asking


async def test_asks_with_different_timeouts_expire_in_deadline_order(
    manual_system: ActorSystem, clock: ManualClock
) -> None:
    ref = manual_system.spawn(Behaviors.ignore(), "silent")
    long = asyncio.create_task(manual_system.ask(ref, lambda r: Echo("x", r), timeout=10.0))
    short = asyncio.create_task(manual_system.ask(ref, lambda r: Echo("y", r), timeout=1.0))
    await clock.advance(1.0)
    assert short.done() and not long.done()
    await clock.advance(9.0)
    assert long.done()
    for task in (short, long):
        with pytest.raises(AskTimeout):
            await task


async def test_late_reply_becomes_a_dead_letter(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    from casty.actors import DeadLetter, EventStreamSubscribe

    letters = probe(manual_system, "letters")
    manual_system.event_stream.tell(
        EventStreamSubscribe(event_type=DeadLetter, handler=letters.ref)
    )
    held: list[ActorRef[str]] = []
    ref = manual_system.spawn(holder(held), "holder")
    asking = asyncio.create_task(manual_system.ask(ref, Hold, timeout=1.0))
    await clock.advance(1.0)
    with pytest.raises(AskTimeout):
        await asking
    ref.tell(Release("too late"))
    letter = await letters.expect_message()
    assert letter.message == "too late"
    assert letter.reason == DeadLetterReason.LATE_ASK_REPLY
    assert letter.recipient is held[0]


async def test_only_the_first_reply_counts(system: ActorSystem, dead_letters: Any) -> None:
    async def twice(ctx: ActorContext[Echo], msg: Echo) -> Behavior[Echo]:
        msg.reply_to.tell("one")
        msg.reply_to.tell("two")
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(twice), "twice")
    assert await system.ask(ref, lambda r: Echo("", r)) == "one"
    letter = await dead_letters.expect_message()
    assert (letter.message, letter.reason) == ("two", DeadLetterReason.LATE_ASK_REPLY)


async def test_ask_on_a_stopped_actor_fails_fast(system: ActorSystem) -> None:
    ref = system.spawn(echo(), "gone")
    await system.stop(ref)
    with pytest.raises(ActorStopped, match="/user/gone"):
        await system.ask(ref, lambda r: Echo("x", r), timeout=60.0)


async def test_ask_queued_when_the_target_stops_fails_fast(system: ActorSystem) -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def slow(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if msg == "block":
            await gate
            return Behaviors.stopped()
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(slow), "slow")
    ref.tell("block")
    asking = asyncio.create_task(system.ask(ref, lambda r: Echo("x", r), timeout=60.0))
    await wait_until(lambda: bool(ref._cell._mailbox))  # type: ignore[attr-defined]  # queued
    gate.set_result(None)
    with pytest.raises(ActorStopped):
        await asking


async def test_unhandled_request_fails_the_ask(system: ActorSystem) -> None:
    ref = system.spawn(Behaviors.empty(), "empty")
    with pytest.raises(UnhandledMessage):
        await system.ask(ref, lambda r: Echo("x", r), timeout=60.0)


async def test_ctx_ask_inside_a_handler(system: ActorSystem) -> None:
    target = system.spawn(echo(), "echo")

    async def relay(ctx: ActorContext[Echo], msg: Echo) -> Behavior[Echo]:
        answer = await ctx.ask(target, lambda r: Echo(msg.text, r), timeout=1.0)
        msg.reply_to.tell(f"relayed {answer}")
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(relay), "relay")
    replies = await asyncio.gather(
        *(system.ask(ref, lambda r, i=i: Echo(f"m{i}", r)) for i in range(3))
    )
    assert replies == ["relayed M0", "relayed M1", "relayed M2"]


async def test_reply_ref_resolves_by_its_address_while_pending(system: ActorSystem) -> None:
    held: list[ActorRef[str]] = []
    ref = system.spawn(holder(held), "holder")
    asking = asyncio.create_task(system.ask(ref, Hold, timeout=5.0))
    await wait_until(lambda: bool(held))
    reply_to = held[0]
    address = system.ref_codec.to_wire(reply_to)
    assert address.startswith("casty://test/temp/$")
    resolved = system.ref_codec.from_wire(address)
    assert resolved is reply_to
    resolved.tell("via address")
    assert await asking == "via address"
    # Once the ask is over, the address no longer resolves to the promise.
    assert system.resolve(address) is not reply_to


async def test_pending_ask_fails_when_the_system_shuts_down() -> None:
    async with ActorSystem(name="closing") as system:
        held: list[ActorRef[str]] = []
        ref = system.spawn(holder(held), "holder")
        asking = asyncio.create_task(system.ask(ref, Hold, timeout=60.0))
        await wait_until(lambda: bool(held))
    with pytest.raises(ActorStopped):
        await asking


@pytest.mark.parametrize("timeout", [0, -1.0, float("inf"), float("nan")])
async def test_bad_timeout_raises(system: ActorSystem, timeout: float) -> None:
    ref = system.spawn(echo(), "echo")
    with pytest.raises(ConfigurationError):
        await system.ask(ref, lambda r: Echo("x", r), timeout=timeout)


async def test_ask_needs_a_ref(system: ActorSystem) -> None:
    with pytest.raises(ConfigurationError, match="ActorRef"):
        await system.ask("/user/echo", lambda r: Echo("x", r))  # type: ignore[arg-type]


async def test_long_timeouts_fire_a_little_late_but_never_early(
    manual_system: ActorSystem, clock: ManualClock
) -> None:
    ref = manual_system.spawn(Behaviors.ignore(), "silent")
    asking = asyncio.create_task(manual_system.ask(ref, lambda r: Echo("x", r), timeout=100.0))
    await clock.advance(99.99)
    assert not asking.done()
    await clock.advance(0.11)  # within 1/1024 of the timeout past the deadline
    with pytest.raises(AskTimeout):
        await asking


async def test_ask_through_a_resolved_address_of_a_stopped_actor_fails_fast(
    manual_system: ActorSystem,
) -> None:
    # Manual clock: the ask can only end by failing fast, never by timing out.
    ref = manual_system.spawn(echo(), "gone")
    await manual_system.stop(ref)
    resolved = manual_system.resolve(ref.address)
    async with asyncio.timeout(2.0):
        with pytest.raises(ActorStopped, match="/user/gone"):
            await manual_system.ask(resolved, lambda r: Echo("x", r), timeout=60.0)


async def test_ask_to_a_foreign_address_fails_fast(manual_system: ActorSystem) -> None:
    foreign = manual_system.resolve("casty://other@10.0.0.1:25520/user/x")
    async with asyncio.timeout(2.0):
        with pytest.raises(ActorStopped, match=r"casty://other@10\.0\.0\.1:25520/user/x"):
            await manual_system.ask(foreign, lambda r: Echo("x", r), timeout=60.0)


async def test_ask_to_dead_letters_fails_fast(manual_system: ActorSystem) -> None:
    async with asyncio.timeout(2.0):
        with pytest.raises(ActorStopped, match="dead letters"):
            await manual_system.ask(
                manual_system.dead_letters, lambda r: Echo("x", r), timeout=60.0
            )


async def test_ask_dropped_by_a_full_mailbox_fails_fast(manual_system: ActorSystem) -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def busy(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        await gate
        return Behaviors.same()

    ref = manual_system.spawn(Behaviors.receive(busy), "busy", mailbox_capacity=1)
    ref.tell("block")
    await wait_until(lambda: not ref._cell._mailbox)  # type: ignore[attr-defined]  # handling
    ref.tell("fills the mailbox")
    async with asyncio.timeout(2.0):
        with pytest.raises(MailboxFull, match="/user/busy"):
            await manual_system.ask(ref, lambda r: Echo("x", r), timeout=60.0)
    gate.set_result(None)


async def test_ask_dropped_by_a_full_stash_fails_fast(manual_system: ActorSystem) -> None:
    def stashing(stash: StashBuffer[Any]) -> Behavior[Any]:
        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            try:
                stash.stash(msg)
            except StashOverflow:
                pass  # the handler copes; the asker must learn its request was dropped
            return Behaviors.same()

        return Behaviors.receive(receive)

    ref = manual_system.spawn(Behaviors.with_stash(1, stashing), "stashing")
    ref.tell("fills the stash")
    async with asyncio.timeout(2.0):
        with pytest.raises(StashOverflow):
            await manual_system.ask(ref, lambda r: Echo("x", r), timeout=60.0)


async def test_stopping_the_target_while_it_handles_the_request_fails_the_ask(
    manual_system: ActorSystem,
) -> None:
    started = asyncio.Event()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def stuck(ctx: ActorContext[Any], msg: Echo) -> Behavior[Any]:
        started.set()
        await never  # still handling the request when the actor is stopped
        return Behaviors.same()

    ref = manual_system.spawn(Behaviors.receive(stuck), "stuck")
    asking = asyncio.create_task(manual_system.ask(ref, lambda r: Echo("x", r), timeout=60.0))
    async with asyncio.timeout(2.0):
        await started.wait()
        await manual_system.stop(ref)
        with pytest.raises(ActorStopped, match="/user/stuck"):
            await asking


async def test_a_reply_sent_before_the_stop_still_counts(manual_system: ActorSystem) -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def answers_then_waits(ctx: ActorContext[Any], msg: Echo) -> Behavior[Any]:
        msg.reply_to.tell("answered")
        await never
        return Behaviors.same()

    ref = manual_system.spawn(Behaviors.receive(answers_then_waits), "answering")
    asking = asyncio.create_task(manual_system.ask(ref, lambda r: Echo("x", r), timeout=60.0))
    async with asyncio.timeout(2.0):
        await wait_until(lambda: ref._cell._task is not None)  # type: ignore[attr-defined]
        await manual_system.stop(ref)
        assert await asking == "answered"


async def test_the_ask_clock_skips_buckets_that_answered_asks_left_empty(
    manual_system: ActorSystem, clock: ManualClock
) -> None:
    # Answered asks leave empty buckets behind: once a bucket fires, the clock callback is set
    # for the first one still waiting, not for each empty one in between.
    echoing = manual_system.spawn(echo(), "echo")
    assert await manual_system.ask(echoing, lambda r: Echo("a", r), timeout=1.0) == "A"
    assert await manual_system.ask(echoing, lambda r: Echo("b", r), timeout=2.0) == "B"
    held: list[ActorRef[str]] = []
    silent = manual_system.spawn(holder(held), "holder")
    waiting = asyncio.create_task(manual_system.ask(silent, lambda r: Hold(r), timeout=3.0))
    await wait_until(lambda: len(held) == 1)  # asked: its timeout is set
    await clock.advance(1.0)  # the first bucket's callback: nothing to expire
    assert not waiting.done()
    assert [timer.when for timer in clock._heap if timer._state == 0] == [pytest.approx(3.0)]
    await clock.advance(1.99)
    assert not waiting.done()  # never early
    await clock.advance(0.01)
    with pytest.raises(AskTimeout, match=r"within 3\.0 s"):
        await waiting
