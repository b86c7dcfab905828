"""Stash: set messages aside and unstash them in order; capacity; what happens on stop/restart."""

from __future__ import annotations

import asyncio
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
    SupervisorStrategy,
)
from casty.errors import ConfigurationError, StashOverflow


def loader(report: ActorRef[Any], capacity: int = 10) -> Behavior[Any]:
    """Stashes everything until "open", then reports messages in order."""

    def with_stash(stash: StashBuffer[Any]) -> Behavior[Any]:
        def ready() -> Behavior[Any]:
            async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                if msg == "fail":
                    raise RuntimeError("restart me")
                report.tell(msg)
                return Behaviors.same()

            return Behaviors.receive(receive)

        async def loading(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if msg == "open":
                report.tell(("stash", stash.size, stash.is_full, stash.capacity))
                return stash.unstash_all(ready())
            if msg == "fail":
                raise RuntimeError("restart me")
            stash.stash(msg)
            return Behaviors.same()

        return Behaviors.receive(loading)

    return Behaviors.with_stash(capacity, with_stash)


async def test_unstash_all_replays_in_order_before_newer_messages(
    system: ActorSystem, probe: Any
) -> None:
    report = probe(system, "report")
    ref = system.spawn(loader(report.ref, capacity=3), "loader")
    for msg in ("a", "b", "c", "open", "d"):
        ref.tell(msg)
    assert await report.expect(5) == [("stash", 3, True, 3), "a", "b", "c", "d"]


async def test_stash_overflow_raises_and_is_a_dead_letter(
    system: ActorSystem, probe: Any, dead_letters: Any
) -> None:
    report = probe(system, "report")
    ref = system.spawn(
        Behaviors.supervise(loader(report.ref, capacity=2), SupervisorStrategy.resume()), "loader"
    )
    for msg in ("a", "b", "c", "open"):
        ref.tell(msg)
    letter = await dead_letters.expect_message()
    assert (letter.message, letter.recipient, letter.reason) == (
        "c",
        ref,
        DeadLetterReason.STASH_OVERFLOW,
    )
    assert await report.expect(3) == [("stash", 2, True, 2), "a", "b"]


async def test_overflow_error_reaches_the_handler(system: ActorSystem) -> None:
    caught: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def with_stash(stash: StashBuffer[Any]) -> Behavior[Any]:
        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            try:
                stash.stash(msg)
            except StashOverflow as exc:
                caught.set_result(exc)
            return Behaviors.same()

        return Behaviors.receive(receive)

    ref = system.spawn(Behaviors.with_stash(1, with_stash), "tiny")
    ref.tell(1)
    ref.tell(2)
    assert "stash of /user/tiny is full (1 messages)" in str(await caught)


async def test_stashed_messages_become_dead_letters_on_stop(
    system: ActorSystem, probe: Any, dead_letters: Any
) -> None:
    report = probe(system, "report")
    ref = system.spawn(loader(report.ref), "loader")
    ref.tell("x")
    ref.tell("y")
    await system.stop(ref)
    await dead_letters.expect(2)
    assert [(d.message, d.reason) for d in dead_letters.messages] == [
        ("x", DeadLetterReason.RECIPIENT_STOPPED),
        ("y", DeadLetterReason.RECIPIENT_STOPPED),
    ]


async def test_restart_discards_the_stash_as_dead_letters(
    system: ActorSystem, probe: Any, dead_letters: Any
) -> None:
    report = probe(system, "report")
    ref = system.spawn(
        Behaviors.supervise(loader(report.ref), SupervisorStrategy.restart()), "loader"
    )
    for msg in ("x", "fail", "open"):
        ref.tell(msg)
    letter = await dead_letters.expect_message()
    assert (letter.message, letter.reason) == ("x", DeadLetterReason.STASH_DISCARDED)
    assert await report.expect_message() == ("stash", 0, False, 10)


async def test_unstash_ignores_the_mailbox_bound(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")

    def with_stash(stash: StashBuffer[Any]) -> Behavior[Any]:
        async def ready(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            report.ref.tell(msg)
            return Behaviors.same()

        async def loading(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if msg == "open":
                return stash.unstash_all(Behaviors.receive(ready))
            stash.stash(msg)
            report.ref.tell(("stashed", stash.size))
            return Behaviors.same()

        return Behaviors.receive(loading)

    ref = system.spawn(Behaviors.with_stash(5, with_stash), "loader", mailbox_capacity=1)
    for i, msg in enumerate("abc", start=1):
        ref.tell(msg)
        assert await report.expect_message() == ("stashed", i)
    ref.tell("open")  # three messages go back into a mailbox bounded at one
    await report.expect(6)
    assert report.messages[3:] == ["a", "b", "c"]


@pytest.mark.parametrize("capacity", [0, -3, 2.5, True])
def test_stash_capacity_is_validated(capacity: Any) -> None:
    with pytest.raises(ConfigurationError):
        Behaviors.with_stash(capacity, lambda stash: Behaviors.ignore())
