"""Lifecycle: stopping (children first, hooks), shutdown leaves no task behind, pipe_to_self."""

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
    PostStop,
    Signal,
    Terminated,
)
from casty.errors import ActorError, ActorStopped, ConfigurationError
from casty.testing.wait import wait_until


@dataclass(frozen=True, slots=True)
class Get:
    reply_to: ActorRef[Any]


def tree(events: list[str], name: str, depth: int) -> Behavior[Any]:
    """An actor with two children down to ``depth``; records its PostStop in ``events``."""

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        if depth:
            for i in range(2):
                ctx.spawn(tree(events, f"{name}.{i}", depth - 1), f"c{i}")

        def on_signal(ctx: ActorContext[Any], signal: Signal) -> None:
            if isinstance(signal, PostStop):
                events.append(name)

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if isinstance(msg, Get):
                msg.reply_to.tell(ctx.children)
            return Behaviors.same()

        return Behaviors.receive(receive, on_signal)

    return Behaviors.setup(setup)


async def wait_started(system: ActorSystem, ref: ActorRef[Any], depth: int) -> None:
    if depth:
        for child in await system.ask(ref, Get):
            await wait_started(system, child, depth - 1)


def before(events: list[str], a: str, b: str) -> bool:
    return events.index(a) < events.index(b)


async def test_shutdown_stops_children_before_parents_and_runs_hooks() -> None:
    events: list[str] = []
    async with ActorSystem(name="tree") as system:
        root = system.spawn(tree(events, "r", 2), "r")
        await wait_started(system, root, 2)
    assert sorted(events) == sorted(["r", "r.0", "r.1", "r.0.0", "r.0.1", "r.1.0", "r.1.1"])
    for parent in ("r", "r.0", "r.1"):
        for i in range(2):
            assert before(events, f"{parent}.{i}", parent)
    assert system.statistics().actors == 0


async def test_stop_stops_a_subtree_children_first(system: ActorSystem) -> None:
    events: list[str] = []
    root = system.spawn(tree(events, "r", 1), "r")
    await wait_started(system, root, 1)
    await system.stop(root)
    assert events[-1] == "r" and sorted(events[:-1]) == ["r.0", "r.1"]
    await system.stop(root)  # idempotent


async def test_stopping_cancels_a_suspended_handler(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        report.ref.tell("waiting")
        try:
            await never
        except asyncio.CancelledError:
            report.ref.tell("cancelled")
            raise
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "stuck")
    ref.tell("go")
    assert await report.expect_message() == "waiting"
    await system.stop(ref)
    assert await report.expect_message() == "cancelled"
    assert system.statistics().tasks == 0


def casty_tasks(before_tasks: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() - before_tasks if t is not current and not t.done()}


async def test_no_task_is_left_pending_after_the_system_exits() -> None:
    before_tasks = asyncio.all_tasks()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started = asyncio.Event()
    async with ActorSystem(name="tasks") as system:

        async def suspended(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            started.set()
            await never
            return Behaviors.same()

        async def failing(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            await asyncio.sleep(0)  # fail from inside a task, not inline
            raise RuntimeError("boom")

        def piping(ctx: ActorContext[Any]) -> Behavior[Any]:
            ctx.pipe_to_self(never, lambda value, exc: ("piped", value, exc))
            return Behaviors.ignore()

        system.spawn(Behaviors.receive(suspended), "suspended").tell("go")
        system.spawn(Behaviors.receive(failing), "failing").tell("go")
        system.spawn(Behaviors.setup(piping), "piping")
        await started.wait()
        assert casty_tasks(before_tasks)  # casty does own tasks right now
    assert casty_tasks(before_tasks) == set()
    assert system.statistics().tasks == 0


async def test_no_task_is_left_after_a_failing_actor() -> None:
    before_tasks = asyncio.all_tasks()
    async with ActorSystem(name="failing") as system:

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            raise ValueError("handler bug")

        ref = system.spawn(Behaviors.receive(receive), "buggy")
        ref.tell("crash")
        await wait_until(lambda: system.resolve("/user/buggy") is not ref)
        # The system keeps working after the failure.
        echo = system.spawn(
            Behaviors.receive(lambda ctx, msg: (msg.reply_to.tell("ok"), Behaviors.same())[1]),
            "echo",
        )
        assert await system.ask(echo, Get) == "ok"
    assert casty_tasks(before_tasks) == set()


async def test_shutdown_is_idempotent_and_concurrent_callers_wait() -> None:
    events: list[str] = []
    system = ActorSystem(name="twice")
    root = system.spawn(tree(events, "r", 1), "r")
    await wait_started(system, root, 1)
    await asyncio.gather(system.shutdown(), system.shutdown())
    await system.shutdown()
    assert sorted(events) == ["r", "r.0", "r.1"]
    root.tell("after shutdown")  # a dead letter, not an exception


async def test_ctx_stop_stops_children_and_itself_but_nothing_else(
    system: ActorSystem, probe: Any
) -> None:
    report = probe(system, "report")
    stranger = system.spawn(Behaviors.ignore(), "stranger")

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        child = ctx.spawn(Behaviors.ignore(), "child")
        ctx.watch(child)

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            match msg:
                case "stop child":
                    ctx.stop(child)
                    ctx.stop(child)  # idempotent
                case "stop stranger":
                    try:
                        ctx.stop(stranger)
                    except ActorError as exc:
                        report.ref.tell(str(exc))
                case "stop self":
                    ctx.stop(ctx.self)
                    report.ref.tell("still handling this message")
                case Terminated(ref):
                    report.ref.tell(f"terminated {ref.path}")
            return Behaviors.same()

        return Behaviors.receive(receive)

    ref = system.spawn(Behaviors.setup(setup), "parent")
    ref.tell("stop child")
    assert await report.expect_message() == "terminated /user/parent/child"
    ref.tell("stop stranger")
    assert await report.expect_message() == "/user/stranger is not a child of /user/parent"
    ref.tell("stop self")
    assert await report.expect_message() == "still handling this message"
    await wait_until(lambda: system.resolve("/user/parent") is not ref)
    assert system.resolve("/user/stranger") is stranger


async def test_system_stop_rejects_foreign_refs_and_guardians(system: ActorSystem) -> None:
    with pytest.raises(ActorError):
        await system.stop(system.dead_letters)
    with pytest.raises(ActorError):
        await system.stop(system.resolve("/user"))
    async with ActorSystem(name="other") as other:
        with pytest.raises(ActorError):
            await system.stop(other.spawn(Behaviors.ignore(), "x"))


async def test_pipe_to_self_delivers_success_and_failure(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")
    loop = asyncio.get_running_loop()
    ok: asyncio.Future[int] = loop.create_future()

    async def fails() -> int:
        raise LookupError("nope")

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        ctx.pipe_to_self(ok, lambda value, exc: ("ok", value, exc))
        ctx.pipe_to_self(fails(), lambda value, exc: ("failed", value, type(exc)))

        async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            report.ref.tell(msg)
            return Behaviors.same()

        return Behaviors.receive(receive)

    system.spawn(Behaviors.setup(setup), "piper")
    assert await report.expect_message() == ("failed", None, LookupError)
    ok.set_result(7)
    assert await report.expect_message() == ("ok", 7, None)
    assert system.statistics().tasks == 0


async def test_a_failing_pipe_mapper_is_supervised(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")

    async def value() -> int:
        return 1

    def mapper(result: int | None, exc: BaseException | None) -> Any:
        raise ZeroDivisionError("mapper bug")

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        ctx.pipe_to_self(value(), mapper)
        return Behaviors.ignore()

    ref = system.spawn(Behaviors.setup(setup), "mapper")

    def watch(ctx: ActorContext[Any]) -> Behavior[Any]:
        ctx.watch(ref)
        return Behaviors.receive(lambda c, m: (report.ref.tell(m), Behaviors.same())[1])

    system.spawn(Behaviors.setup(watch), "watcher")
    assert await report.expect_message() == Terminated(ref)


async def test_a_busy_actor_does_not_starve_others(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")

    def spinner(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if msg == "spin":
            ctx.self.tell("spin")  # forever busy, one message at a time
        return Behaviors.same()

    spin = system.spawn(Behaviors.receive(spinner), "spinner")
    spin.tell("spin")
    # Another actor and this very task still get turns while the spinner never goes idle.
    for i in range(3):
        report.ref.tell(i)
    assert await report.expect(3) == [0, 1, 2]
    await system.stop(spin)


async def test_setup_returning_stopped_stops_at_once(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        return Behaviors.stopped(lambda: report.ref.tell("post_stop ran"))

    ref = system.spawn(Behaviors.setup(setup), "brief")
    assert await report.expect_message() == "post_stop ran"
    await wait_until(lambda: system.resolve("/user/brief") is not ref)


async def test_a_stopping_actor_cannot_spawn(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")

    def on_signal(ctx: ActorContext[Any], signal: Signal) -> None:
        try:
            ctx.spawn(Behaviors.ignore(), "too-late")
        except ActorStopped as exc:
            report.ref.tell(str(exc))

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        msg.reply_to.tell("started")
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive, on_signal), "ending")
    await system.ask(ref, Get)  # only a started actor gets PostStop
    await system.stop(ref)
    assert await report.expect_message() == "/user/ending is stopping; cannot spawn 'too-late'"


async def test_stopping_right_after_a_handler_suspended_cancels_it(system: ActorSystem) -> None:
    # No loop turn between the handler's first suspension and the stop: the task that would
    # finish the handler has not run a single step yet when it is cancelled.
    suspended = asyncio.Event()
    seen: list[str] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        suspended.set()
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "fresh-task")
    ref.tell("go")
    await suspended.wait()
    async with asyncio.timeout(2.0):
        await system.stop(ref)
    assert seen == ["cancelled"]
    assert never.cancelled()  # what it awaited is cancelled, as a task's awaited future is
    assert system.statistics().tasks == 0


async def test_shutdown_is_bounded_when_a_handler_ignores_cancellation(caplog: Any) -> None:
    release = asyncio.Event()
    stubborn_started = asyncio.Event()
    stopped: list[str] = []

    async def stubborn(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        stubborn_started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass  # the bug this guards against: cancellation swallowed, work goes on
        return Behaviors.same()

    def well_behaved(ctx: ActorContext[Any], signal: Signal) -> None:
        if isinstance(signal, PostStop):
            stopped.append(ctx.self.path)

    system = ActorSystem(name="stuck", shutdown_timeout=0.05)
    system.spawn(Behaviors.receive(stubborn), "stubborn").tell("go")
    system.spawn(Behaviors.receive(lambda ctx, msg: Behaviors.same(), well_behaved), "fine")
    await stubborn_started.wait()
    async with asyncio.timeout(2.0):
        await system.shutdown()
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "casty.actors"]
    assert len(errors) == 1 and "/user/stubborn" in errors[0].getMessage()
    assert "/user/fine" not in errors[0].getMessage()
    assert stopped == ["/user/fine"]
    # The abandoned handler is still running; let it end so the test leaves nothing behind.
    assert system.statistics().tasks == 1
    release.set()
    await wait_until(lambda: system.statistics().tasks == 0)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), "10"])
async def test_bad_shutdown_timeout_raises(timeout: Any) -> None:
    with pytest.raises(ConfigurationError, match="shutdown_timeout"):
        ActorSystem(name="bad", shutdown_timeout=timeout)
