"""Mailboxes and dead letters: every dropped message is published with its reason."""

from __future__ import annotations

import asyncio
from typing import Any

from casty.actors import (
    ActorContext,
    ActorSystem,
    Behavior,
    Behaviors,
    DeadLetter,
    DeadLetterReason,
)


async def test_bounded_mailbox_overflow_is_a_dead_letter(
    system: ActorSystem, probe: Any, dead_letters: Any
) -> None:
    report = probe(system, "report")
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if msg == "block":
            await gate
        else:
            report.ref.tell(msg)
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "bounded", mailbox_capacity=2)
    ref.tell("block")
    ref.tell(1)  # the mailbox holds "block", 1: full
    ref.tell(2)
    ref.tell(3)
    await dead_letters.expect(2)
    assert [(d.message, d.recipient, d.reason) for d in dead_letters.messages] == [
        (2, ref, DeadLetterReason.MAILBOX_FULL),
        (3, ref, DeadLetterReason.MAILBOX_FULL),
    ]
    gate.set_result(None)
    ref.tell(4)  # room again once the actor drained its mailbox
    await report.expect(2)
    assert report.messages == [1, 4]


async def test_unbounded_by_default(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if msg == "block":
            await gate
        elif msg == 9_999:
            report.ref.tell("last")
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "unbounded")
    ref.tell("block")
    for i in range(10_000):
        ref.tell(i)
    gate.set_result(None)
    assert await report.expect_message() == "last"
    assert system.statistics().dead_letters == 0


async def test_tell_to_a_stopped_actor_is_a_dead_letter_not_an_error(
    system: ActorSystem, dead_letters: Any
) -> None:
    ref = system.spawn(Behaviors.ignore(), "gone")
    await system.stop(ref)
    ref.tell("anyone?")
    letter = await dead_letters.expect_message()
    assert letter == DeadLetter("anyone?", ref, DeadLetterReason.RECIPIENT_STOPPED)


async def test_messages_left_in_the_mailbox_at_stop_are_dead_letters(
    system: ActorSystem, dead_letters: Any
) -> None:
    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        return Behaviors.stopped()

    ref = system.spawn(Behaviors.receive(receive), "quitter")
    for msg in ("stop", "left 1", "left 2"):
        ref.tell(msg)
    await dead_letters.expect(2)
    assert [(d.message, d.reason) for d in dead_letters.messages] == [
        ("left 1", DeadLetterReason.RECIPIENT_STOPPED),
        ("left 2", DeadLetterReason.RECIPIENT_STOPPED),
    ]


async def test_telling_dead_letters_directly(system: ActorSystem, dead_letters: Any) -> None:
    system.dead_letters.tell("into the void")
    letter = await dead_letters.expect_message()
    assert letter == DeadLetter(
        "into the void", system.dead_letters, DeadLetterReason.SENT_TO_DEAD_LETTERS
    )
    assert system.dead_letters.path == "/deadLetters"


async def test_dead_letters_are_counted(system: ActorSystem) -> None:
    before = system.statistics().dead_letters
    for _ in range(3):
        system.dead_letters.tell("x")
    assert system.statistics().dead_letters == before + 3


async def test_a_dead_letter_about_a_dead_letter_is_not_republished(
    system: ActorSystem, dead_letters: Any
) -> None:
    # A stopped DeadLetter subscriber: delivering to it drops a DeadLetter, which must not loop.
    sink = system.spawn(Behaviors.ignore(), "sink")
    await system.stop(sink)
    sink.tell(DeadLetter("inner", sink, DeadLetterReason.UNHANDLED))
    system.dead_letters.tell("after")
    letter = await dead_letters.expect_message()
    assert letter.message == "after"
    assert all(not isinstance(d.message, DeadLetter) for d in dead_letters.messages)


async def test_every_reason_has_a_stable_text() -> None:
    assert {r.value for r in DeadLetterReason} == {
        "recipient stopped",
        "mailbox full",
        "late ask reply",
        "unhandled",
        "stash overflow",
        "stash discarded on restart",
        "unknown recipient",
        "sent to dead letters",
    }
