"""Timers: single, periodic, keyed replacement, cancel (even when queued), death with the actor."""

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
    PreRestart,
    Signal,
    SupervisorStrategy,
    TimerScheduler,
)
from casty.errors import ConfigurationError
from casty.testing.clock import ManualClock


@dataclass(frozen=True, slots=True)
class Single:
    key: str
    message: str
    delay: float


@dataclass(frozen=True, slots=True)
class Periodic:
    key: str
    message: str
    interval: float


@dataclass(frozen=True, slots=True)
class Cancel:
    key: str


@dataclass(frozen=True, slots=True)
class Active:
    """Reports ``("active", key, is_active)`` (not an ask: asks arm the clock themselves)."""

    key: str


def timer_messages(messages: list[Any]) -> list[Any]:
    """What the timers sent, without the ``Active`` reports."""
    return [m for m in messages if not (isinstance(m, tuple) and m[0] == "active")]


def timed(report: ActorRef[Any], gate: asyncio.Future[None] | None = None) -> Behavior[Any]:
    """Starts timers on command; reports every other message (``"block"`` waits for ``gate``)."""

    def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            match msg:
                case Single(key, message, delay):
                    timers.start_single_timer(key, message, delay)
                case Periodic(key, message, interval):
                    timers.start_periodic_timer(key, message, interval)
                case Cancel(key):
                    timers.cancel(key)
                case "cancel all":
                    timers.cancel_all()
                case Active(key):
                    report.tell(("active", key, timers.is_active(key)))
                case "block":
                    assert gate is not None
                    await gate
                    # Both timers fired while we waited; their messages are queued behind us.
                    timers.cancel("k")
                    timers.start_single_timer("r", "fresh", 1.0)
                case "fail":
                    raise RuntimeError("restart me")
                case _:
                    report.tell(msg)
            return Behaviors.same()

        return Behaviors.receive(receive)

    return Behaviors.with_timers(with_timers)


async def test_single_timer_fires_once_after_its_delay(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    report = probe(manual_system, "report")
    ref = manual_system.spawn(timed(report.ref), "timed")
    ref.tell(Single("k", "tick", 2.0))
    ref.tell(Active("k"))
    assert await report.expect_message() == ("active", "k", True)
    await clock.advance(1.9)
    assert timer_messages(report.messages) == []
    await clock.advance(0.1)
    assert await report.expect_message() == "tick"
    ref.tell(Active("k"))
    assert await report.expect_message() == ("active", "k", False)
    await clock.advance(10.0)
    assert timer_messages(report.messages) == ["tick"]
    assert clock.pending == 0


async def test_periodic_timer_repeats_until_cancelled(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    report = probe(manual_system, "report")
    ref = manual_system.spawn(timed(report.ref), "timed")
    ref.tell(Periodic("beat", "beat", 1.0))
    ref.tell(Active("beat"))
    await report.expect_message()
    await clock.advance(3.0)
    await report.wait_for(lambda m: len(timer_messages(m)) >= 3)
    assert timer_messages(report.messages) == ["beat"] * 3
    ref.tell(Cancel("beat"))
    ref.tell(Active("beat"))
    await report.wait_for(lambda m: ("active", "beat", False) in m)
    await clock.advance(5.0)
    assert timer_messages(report.messages) == ["beat"] * 3
    assert clock.pending == 0


async def test_restarting_a_key_replaces_the_timer(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    report = probe(manual_system, "report")
    ref = manual_system.spawn(timed(report.ref), "timed")
    ref.tell(Single("k", "old", 1.0))
    ref.tell(Single("k", "new", 2.0))
    ref.tell(Single("other", "independent", 1.0))
    ref.tell(Active("k"))
    await report.expect_message()
    await clock.advance(5.0)
    await report.wait_for(lambda m: len(timer_messages(m)) >= 2)
    assert sorted(timer_messages(report.messages)) == ["independent", "new"]
    assert clock.pending == 0


async def test_a_cancelled_timers_queued_message_is_discarded(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    report = probe(manual_system, "report")
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ref = manual_system.spawn(timed(report.ref, gate), "timed")
    ref.tell(Single("k", "stale", 1.0))
    ref.tell(Single("r", "replaced", 1.0))
    ref.tell("block")  # busy while both timers fire; then cancels "k" and restarts "r"
    ref.tell("marker")
    await clock.advance(1.0)  # both timer messages are queued behind "block" and "marker"
    gate.set_result(None)
    assert await report.expect_message() == "marker"
    await clock.advance(1.0)
    assert await report.expect_message() == "fresh"
    assert timer_messages(report.messages) == ["marker", "fresh"]


async def test_cancel_all_and_unknown_keys(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    report = probe(manual_system, "report")
    ref = manual_system.spawn(timed(report.ref), "timed")
    ref.tell(Cancel("never started"))
    ref.tell(Periodic("a", "a", 1.0))
    ref.tell(Single("b", "b", 1.0))
    ref.tell("cancel all")
    ref.tell(Active("a"))
    await report.expect_message()
    assert clock.pending == 0
    await clock.advance(3.0)
    assert timer_messages(report.messages) == []


async def test_timers_die_with_the_actor(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    report = probe(manual_system, "report")
    ref = manual_system.spawn(timed(report.ref), "timed")
    ref.tell(Periodic("beat", "beat", 1.0))
    ref.tell(Single("once", "once", 5.0))
    ref.tell(Active("beat"))
    await report.expect_message()
    assert clock.pending == 2
    await manual_system.stop(ref)
    assert clock.pending == 0
    await clock.advance(10.0)
    assert timer_messages(report.messages) == []


async def test_timers_are_cancelled_on_restart(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    report = probe(manual_system, "report")
    ref = manual_system.spawn(
        Behaviors.supervise(timed(report.ref), SupervisorStrategy.restart()), "timed"
    )
    ref.tell(Periodic("beat", "beat", 1.0))
    ref.tell("fail")
    ref.tell(Active("beat"))
    assert await report.expect_message() == ("active", "beat", False)
    await clock.advance(3.0)
    assert timer_messages(report.messages) == []


async def test_timer_arguments_are_validated(manual_system: ActorSystem) -> None:
    errors: asyncio.Future[list[type[BaseException]]] = asyncio.get_running_loop().create_future()

    def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
        found: list[type[BaseException]] = []
        for call in (
            lambda: timers.start_single_timer("k", "m", -1.0),
            lambda: timers.start_single_timer("k", "m", float("inf")),
            lambda: timers.start_periodic_timer("k", "m", 0.0),
            lambda: timers.start_periodic_timer("k", "m", float("nan")),
        ):
            try:
                call()
            except ConfigurationError as exc:
                found.append(type(exc))
        errors.set_result(found)
        return Behaviors.ignore()

    manual_system.spawn(Behaviors.with_timers(with_timers), "validating")
    assert await errors == [ConfigurationError] * 4


async def test_timers_on_the_real_clock(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")
    ref = system.spawn(timed(report.ref), "timed")
    ref.tell(Single("k", "soon", 0.001))
    assert await report.expect_message() == "soon"


@pytest.mark.parametrize("delay", [0.0])
async def test_zero_delay_fires_on_the_next_advance(
    manual_system: ActorSystem, clock: ManualClock, probe: Any, delay: float
) -> None:
    report = probe(manual_system, "report")
    ref = manual_system.spawn(timed(report.ref), "timed")
    ref.tell(Single("k", "now", delay))
    ref.tell(Active("k"))
    await report.expect_message()
    await clock.advance(0)
    assert await report.expect_message() == "now"


async def test_a_timer_started_while_stopping_is_ignored(
    manual_system: ActorSystem, clock: ManualClock
) -> None:
    def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
        def on_signal(ctx: ActorContext[Any], signal: Any) -> None:
            timers.start_periodic_timer("zombie", "tick", 1.0)  # in PostStop: too late

        return Behaviors.receive(lambda ctx, msg: Behaviors.same(), on_signal)

    ref = manual_system.spawn(Behaviors.with_timers(with_timers), "stopping")
    await manual_system.stop(ref)
    assert clock.pending == 0


async def test_a_timer_started_in_pre_restart_does_not_reach_the_new_incarnation(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    report = probe(manual_system, "report")

    def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            report.ref.tell(msg)
            if msg == "fail":
                raise ValueError("restart me")
            return Behaviors.same()

        def on_signal(ctx: ActorContext[Any], signal: Signal) -> None:
            if isinstance(signal, PreRestart):
                timers.start_single_timer("k", "from-old-incarnation", 0.01)

        return Behaviors.receive(receive, on_signal)

    ref = manual_system.spawn(
        Behaviors.supervise(Behaviors.with_timers(with_timers), SupervisorStrategy.restart()),
        "restarting",
    )
    ref.tell("fail")
    ref.tell("after restart")  # handled by the new incarnation, once the restart is over
    await report.wait_for(lambda m: "after restart" in m)
    assert clock.pending == 0
    await clock.advance(1.0)
    ref.tell("later")
    await report.wait_for(lambda m: "later" in m)
    assert report.messages == ["fail", "after restart", "later"]
