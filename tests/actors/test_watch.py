"""Death watch: Terminated(ref) through the mailbox, custom notices, unwatch, ordering."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from casty.actors import ActorContext, ActorRef, ActorSystem, Behavior, Behaviors, Terminated


@dataclass(frozen=True, slots=True)
class Watch:
    ref: ActorRef[Any]
    message: object = None


@dataclass(frozen=True, slots=True)
class Unwatch:
    ref: ActorRef[Any]


def watcher(report: ActorRef[Any]) -> Behavior[Any]:
    """Watches on request and forwards everything else it receives to ``report``."""

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        match msg:
            case Watch(ref, message):
                ctx.watch(ref, message)
            case Unwatch(ref):
                ctx.unwatch(ref)
            case _:
                report.tell(msg)
        return Behaviors.same()

    return Behaviors.receive(receive)


async def test_watch_delivers_terminated(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")
    target = system.spawn(Behaviors.ignore(), "target")
    w = system.spawn(watcher(report.ref), "watcher")
    w.tell(Watch(target))
    w.tell("watching")
    await report.expect_message()
    await system.stop(target)
    assert await report.expect_message() == Terminated(target)


async def test_watch_with_a_custom_message(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")
    target = system.spawn(Behaviors.ignore(), "target")
    w = system.spawn(watcher(report.ref), "watcher")
    w.tell(Watch(target, ("gone", "target")))
    w.tell("watching")
    await report.expect_message()
    await system.stop(target)
    assert await report.expect_message() == ("gone", "target")


async def test_watching_a_dead_actor_reports_at_once(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")
    target = system.spawn(Behaviors.ignore(), "target")
    await system.stop(target)
    w = system.spawn(watcher(report.ref), "watcher")
    w.tell(Watch(target))
    assert await report.expect_message() == Terminated(target)
    unknown = system.resolve("/user/never-was")
    w.tell(Watch(unknown))
    assert await report.expect_message() == Terminated(unknown)


async def test_unwatch_suppresses_even_a_queued_notice(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    target = system.spawn(Behaviors.ignore(), "target")

    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if msg == "watch":
            ctx.watch(target)
        elif msg == "wait":
            await gate  # the Terminated notice queues up behind this message
            ctx.unwatch(target)
        else:
            report.ref.tell(msg)
        return Behaviors.same()

    w = system.spawn(Behaviors.receive(receive), "watcher")
    w.tell("watch")
    w.tell("wait")
    await system.stop(target)
    w.tell("after")
    gate.set_result(None)
    assert await report.expect_message() == "after"
    w.tell("end")
    assert await report.expect_message() == "end"
    assert Terminated(target) not in report.messages


async def test_terminated_comes_after_the_dead_actors_last_messages(
    system: ActorSystem, probe: Any
) -> None:
    report = probe(system, "report")
    w = system.spawn(watcher(report.ref), "watcher")

    async def chatty(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        for i in range(5):
            w.tell(i)
        return Behaviors.stopped()

    target = system.spawn(Behaviors.receive(chatty), "chatty")
    w.tell(Watch(target))
    w.tell("watching")
    await report.expect_message()
    target.tell("go")
    await report.wait_for(lambda m: Terminated(target) in m)
    assert report.messages[1:] == [0, 1, 2, 3, 4, Terminated(target)]


async def test_a_stopped_watcher_unregisters(system: ActorSystem, probe: Any) -> None:
    report = probe(system, "report")
    target = system.spawn(Behaviors.ignore(), "target")
    w = system.spawn(watcher(report.ref), "watcher")
    w.tell(Watch(target))
    w.tell("watching")
    await report.expect_message()
    assert system.resolve("/user/target") is target
    cell = target._cell  # type: ignore[attr-defined]
    assert cell._extras.watchers  # the watcher is registered on the target
    await system.stop(w)
    assert not cell._extras.watchers
