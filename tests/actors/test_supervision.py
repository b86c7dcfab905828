"""Supervision: stop by default, resume, restart (limits, backoff, children), escalate."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from casty.actors import (
    ActorContext,
    ActorRef,
    ActorSystem,
    Backoff,
    Behavior,
    Behaviors,
    Signal,
    SupervisorStrategy,
    Terminated,
)
from casty.errors import ConfigurationError
from casty.testing.clock import ManualClock
from casty.testing.wait import wait_until


@dataclass(frozen=True, slots=True)
class Boom:
    exc: BaseException


@dataclass(frozen=True, slots=True)
class Get:
    reply_to: ActorRef[Any]


def worker(events: list[str], name: str = "worker") -> Behavior[Any]:
    """Counts messages; ``Boom`` raises; records setups and signals in ``events``."""

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        events.append(f"{name} setup")
        count = 0

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            nonlocal count
            match msg:
                case Boom(exc):
                    raise exc
                case Get(reply_to):
                    reply_to.tell(count)
                case _:
                    count += 1
            return Behaviors.same()

        def on_signal(ctx: ActorContext[Any], signal: Signal) -> None:
            events.append(f"{name} {type(signal).__name__}")

        return Behaviors.receive(receive, on_signal)

    return Behaviors.setup(setup)


def watch_from(system: ActorSystem, target: ActorRef[Any], report: ActorRef[Any]) -> None:
    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        ctx.watch(target)

        def forward(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            report.tell(msg)
            return Behaviors.same()

        return Behaviors.receive(forward)

    system.spawn(Behaviors.setup(setup), f"watch-{target.path.rsplit('/', 1)[1]}")


async def test_unsupervised_failure_stops_the_actor_and_is_logged(
    system: ActorSystem, probe: Any, caplog: Any
) -> None:
    events: list[str] = []
    report = probe(system, "report")
    ref = system.spawn(worker(events), "worker")
    watch_from(system, ref, report.ref)
    ref.tell(Boom(ValueError("bad input")))
    assert await report.expect_message() == Terminated(ref)
    assert events == ["worker setup", "worker PostStop"]
    assert "/user/worker failed: ValueError('bad input'); stop" in caplog.text
    # The system is unharmed.
    other = system.spawn(worker(events, "other"), "other")
    assert await system.ask(other, Get) == 0


async def test_resume_keeps_state(system: ActorSystem) -> None:
    events: list[str] = []
    ref = system.spawn(Behaviors.supervise(worker(events), SupervisorStrategy.resume()), "w")
    ref.tell("one")
    ref.tell(Boom(RuntimeError("ignored")))
    ref.tell("two")
    assert await system.ask(ref, Get) == 2
    assert events == ["worker setup"]


async def test_restart_runs_setup_again_with_fresh_state(system: ActorSystem) -> None:
    events: list[str] = []
    ref = system.spawn(Behaviors.supervise(worker(events), SupervisorStrategy.restart()), "w")
    ref.tell("one")
    ref.tell(Boom(RuntimeError("reset me")))
    ref.tell("two")  # kept in the mailbox across the restart
    assert await system.ask(ref, Get) == 1
    assert events == ["worker setup", "worker PreRestart", "worker setup"]


async def test_restart_stops_old_children_first(system: ActorSystem) -> None:
    events: list[str] = []

    def parent_setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        events.append("parent setup")
        child = ctx.spawn(worker(events, "child"), "child")  # same name on every start

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            match msg:
                case Boom(exc):
                    raise exc
                case Get(reply_to):
                    reply_to.tell(child)
            return Behaviors.same()

        def on_signal(ctx: ActorContext[Any], signal: Signal) -> None:
            events.append(f"parent {type(signal).__name__}")

        return Behaviors.receive(receive, on_signal)

    parent = system.spawn(
        Behaviors.supervise(Behaviors.setup(parent_setup), SupervisorStrategy.restart()), "parent"
    )
    old_child = await system.ask(parent, Get)
    old_child.tell("counted")
    assert await system.ask(old_child, Get) == 1
    parent.tell(Boom(RuntimeError("parent fails")))
    new_child = await system.ask(parent, Get)
    assert new_child.path == "/user/parent/child"
    assert await system.ask(new_child, Get) == 0  # a new incarnation
    assert events == [
        "parent setup",
        "child setup",
        "child PostStop",  # the old child stopped before the parent's PreRestart
        "parent PreRestart",
        "parent setup",
        "child setup",
    ]


async def test_too_many_restarts_within_the_window_stop_the_actor(
    manual_system: ActorSystem, clock: ManualClock, probe: Any
) -> None:
    events: list[str] = []
    report = probe(manual_system, "report")
    strategy = SupervisorStrategy.restart(max_restarts=2, within=10.0)
    ref = manual_system.spawn(Behaviors.supervise(worker(events), strategy), "w")
    watch_from(manual_system, ref, report.ref)
    for _ in range(2):
        ref.tell(Boom(RuntimeError("x")))
    assert await manual_system.ask(ref, Get) == 0
    assert events.count("worker setup") == 3
    await clock.advance(10.5)  # the first two restarts leave the window
    for _ in range(2):
        ref.tell(Boom(RuntimeError("y")))
    assert await manual_system.ask(ref, Get) == 0
    assert events.count("worker setup") == 5
    ref.tell(Boom(RuntimeError("one too many")))
    assert await report.expect_message() == Terminated(ref)
    assert events[-1] == "worker PostStop"


async def test_max_restarts_zero_stops_at_the_first_failure(
    system: ActorSystem, probe: Any
) -> None:
    events: list[str] = []
    report = probe(system, "report")
    ref = system.spawn(
        Behaviors.supervise(worker(events), SupervisorStrategy.restart(max_restarts=0)), "w"
    )
    watch_from(system, ref, report.ref)
    ref.tell(Boom(RuntimeError("x")))
    assert await report.expect_message() == Terminated(ref)
    assert events == ["worker setup", "worker PostStop"]


async def test_backoff_waits_before_each_restart(
    manual_system: ActorSystem, clock: ManualClock
) -> None:
    events: list[str] = []
    strategy = SupervisorStrategy.restart(backoff=Backoff(1.0, 3.0, random_factor=0))
    ref = manual_system.spawn(Behaviors.supervise(worker(events), strategy), "w")
    ref.tell(Boom(RuntimeError("first")))
    ref.tell("queued while backing off")
    asking = asyncio.create_task(manual_system.ask(ref, Get, timeout=60))
    await clock.advance(0.99)
    assert events == ["worker setup", "worker PreRestart"] and not asking.done()
    await clock.advance(0.01)
    assert await asking == 1
    assert events[-1] == "worker setup"
    # The second restart inside the window waits twice as long; the cap applies after.
    ref.tell(Boom(RuntimeError("second")))
    await clock.advance(1.99)
    assert events.count("worker setup") == 2
    await clock.advance(0.01)
    assert events.count("worker setup") == 3
    ref.tell(Boom(RuntimeError("third")))
    await clock.advance(2.99)
    assert events.count("worker setup") == 3
    await clock.advance(0.01)
    assert events.count("worker setup") == 4


async def test_stop_during_backoff_ends_the_actor(
    manual_system: ActorSystem, clock: ManualClock
) -> None:
    events: list[str] = []
    strategy = SupervisorStrategy.restart(backoff=Backoff(5.0, 5.0, random_factor=0))
    ref = manual_system.spawn(Behaviors.supervise(worker(events), strategy), "w")
    ref.tell(Boom(RuntimeError("x")))
    await clock.advance(1.0)
    await manual_system.stop(ref)
    assert clock.pending == 0  # the backoff timer died with the actor
    await clock.advance(10.0)
    assert events == ["worker setup", "worker PreRestart"]


async def test_escalate_fails_the_parent_which_restarts(system: ActorSystem, caplog: Any) -> None:
    events: list[str] = []

    def parent_setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        events.append("parent setup")
        child = ctx.spawn(
            Behaviors.supervise(worker(events, "child"), SupervisorStrategy.escalate()), "child"
        )

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            msg.reply_to.tell(child)
            return Behaviors.same()

        return Behaviors.receive(receive)

    parent = system.spawn(
        Behaviors.supervise(Behaviors.setup(parent_setup), SupervisorStrategy.restart()), "parent"
    )
    child = await system.ask(parent, Get)
    child.tell(Boom(KeyError("deep")))
    await wait_until(lambda: events.count("child setup") == 2)
    assert events == [
        "parent setup",
        "child setup",
        "child PostStop",
        "parent setup",
        "child setup",
    ]
    assert "/user/parent failure escalated from /user/parent/child" in caplog.text
    new_child = await system.ask(parent, Get)
    assert await system.ask(new_child, Get) == 0


async def test_escalation_climbs_until_a_strategy_handles_it(system: ActorSystem) -> None:
    events: list[str] = []
    escalate = SupervisorStrategy.escalate()

    def level(name: str, below: Behavior[Any] | None) -> Behavior[Any]:
        def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
            events.append(f"{name} setup")
            child = ctx.spawn(below, "below") if below is not None else None

            async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                match msg:
                    case Boom(exc):
                        raise exc
                    case Get(reply_to):
                        reply_to.tell(child)
                return Behaviors.same()

            return Behaviors.receive(receive)

        return Behaviors.setup(setup)

    leaf = Behaviors.supervise(level("leaf", None), escalate)
    middle = Behaviors.supervise(level("middle", leaf), escalate)
    top = system.spawn(
        Behaviors.supervise(level("top", middle), SupervisorStrategy.restart()), "top"
    )
    middle_ref = await system.ask(top, Get)
    leaf_ref = await system.ask(middle_ref, Get)
    leaf_ref.tell(Boom(ValueError("from the leaf")))
    await wait_until(lambda: events.count("leaf setup") == 2)
    assert events == ["top setup", "middle setup", "leaf setup"] * 2


async def test_escalation_from_a_top_level_actor_is_contained(
    system: ActorSystem, probe: Any, caplog: Any
) -> None:
    events: list[str] = []
    report = probe(system, "report")
    ref = system.spawn(Behaviors.supervise(worker(events), SupervisorStrategy.escalate()), "w")
    watch_from(system, ref, report.ref)
    ref.tell(Boom(OSError("up and away")))
    assert await report.expect_message() == Terminated(ref)
    assert "/user failure escalated from /user/w" in caplog.text
    fresh = system.spawn(worker(events, "fresh"), "fresh")
    assert await system.ask(fresh, Get) == 0


async def test_strategies_filter_by_exception_type(system: ActorSystem, probe: Any) -> None:
    events: list[str] = []
    report = probe(system, "report")
    strategy = SupervisorStrategy.restart(on=(ValueError, KeyError))
    ref = system.spawn(Behaviors.supervise(worker(events), strategy), "w")
    watch_from(system, ref, report.ref)
    ref.tell(Boom(KeyError("handled")))
    assert await system.ask(ref, Get) == 0
    ref.tell(Boom(TypeError("not handled")))
    assert await report.expect_message() == Terminated(ref)
    assert events == ["worker setup", "worker PreRestart", "worker setup", "worker PostStop"]


async def test_nested_supervisors_try_the_innermost_first(system: ActorSystem) -> None:
    events: list[str] = []
    inner = Behaviors.supervise(worker(events), SupervisorStrategy.resume(on=ValueError))
    ref = system.spawn(Behaviors.supervise(inner, SupervisorStrategy.restart()), "w")
    ref.tell("one")
    ref.tell(Boom(ValueError("resumed by the inner one")))
    assert await system.ask(ref, Get) == 1
    ref.tell(Boom(KeyError("restarted by the outer one")))
    assert await system.ask(ref, Get) == 0
    ref.tell("one")
    ref.tell(Boom(ValueError("the inner one is back after the restart")))
    assert await system.ask(ref, Get) == 1


async def test_failing_setup_is_restarted_until_it_succeeds(system: ActorSystem) -> None:
    attempts: list[int] = []

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise ConnectionError("not yet")

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            msg.reply_to.tell(len(attempts))
            return Behaviors.same()

        return Behaviors.receive(receive)

    ref = system.spawn(
        Behaviors.supervise(Behaviors.setup(setup), SupervisorStrategy.restart()), "flaky"
    )
    assert await system.ask(ref, Get) == 3


async def test_a_failed_setup_cannot_be_resumed(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        raise RuntimeError("broken setup")

    ref = system.spawn(
        Behaviors.supervise(Behaviors.setup(setup), SupervisorStrategy.resume()), "broken"
    )
    watch_from(system, ref, report.ref)
    assert await report.expect_message() == Terminated(ref)


async def test_a_handlers_own_cancelled_error_is_a_failure(system: ActorSystem) -> None:
    events: list[str] = []

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        events.append("setup")

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if msg == "cancelled":
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                future.cancel()
                await future  # raises CancelledError that nobody asked for
            else:
                msg.reply_to.tell(len(events))
            return Behaviors.same()

        return Behaviors.receive(receive)

    # CancelledError is not an Exception: a strategy has to name it to handle it.
    strategy = SupervisorStrategy.restart(on=(Exception, asyncio.CancelledError))
    ref = system.spawn(Behaviors.supervise(Behaviors.setup(setup), strategy), "w")
    ref.tell("cancelled")
    assert await system.ask(ref, Get) == 2


async def test_failing_lifecycle_hooks_are_logged_and_stop_completes(
    system: ActorSystem, caplog: Any
) -> None:
    def on_signal(ctx: ActorContext[Any], signal: Signal) -> None:
        raise RuntimeError("hook broke")

    async def post_stop() -> None:
        raise RuntimeError("post_stop broke")

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        return Behaviors.stopped(post_stop)

    ref = system.spawn(Behaviors.receive(receive, on_signal), "hooks")
    ref.tell("stop")
    await wait_until(lambda: system.resolve("/user/hooks") is not ref)
    assert "/user/hooks: PostStop raised" in caplog.text
    assert "/user/hooks: post_stop raised" in caplog.text


async def test_strategy_arguments_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        SupervisorStrategy.restart(max_restarts=-1)
    with pytest.raises(ConfigurationError):
        SupervisorStrategy.restart(within=0)
    with pytest.raises(ConfigurationError):
        SupervisorStrategy.stop(on=(ValueError, "not a type"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Backoff(2.0, 1.0)
    with pytest.raises(ConfigurationError):
        Behaviors.supervise(Behaviors.ignore(), "restart")  # type: ignore[arg-type]
    assert Backoff(1.0, 8.0, random_factor=0).delay(2) == 4.0
    assert Backoff(1.0, 8.0, random_factor=0).delay(10) == 8.0
    assert 1.0 <= Backoff(1.0, 8.0, random_factor=0.5).delay(0) < 1.5
