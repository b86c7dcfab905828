"""The event stream: subscribe by type (subclasses match), unsubscribe, pruning of the dead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from casty.actors import (
    ActorSystem,
    Behaviors,
    EventStreamPublish,
    EventStreamSubscribe,
    EventStreamUnsubscribe,
)
from casty.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class MemberEvent:
    node: str


@dataclass(frozen=True, slots=True)
class MemberUp(MemberEvent):
    pass


@dataclass(frozen=True, slots=True)
class MemberLeft(MemberEvent):
    pass


@dataclass(frozen=True, slots=True)
class Done:
    pass


async def test_subscribers_get_events_of_their_type_and_subclasses(
    system: ActorSystem, probe: Any
) -> None:
    ups = probe(system, "ups")
    everything = probe(system, "members")
    system.event_stream.tell(EventStreamSubscribe(event_type=MemberUp, handler=ups.ref))
    system.event_stream.tell(EventStreamSubscribe(event_type=MemberEvent, handler=everything.ref))
    system.publish(MemberUp("a"))
    system.event_stream.tell(EventStreamPublish(MemberLeft("b")))
    system.publish("not an event anyone wants")
    system.publish(MemberUp("c"))
    for p in (ups, everything):
        system.event_stream.tell(EventStreamSubscribe(event_type=Done, handler=p.ref))
    system.publish(Done())
    await ups.wait_for(lambda m: Done() in m)
    await everything.wait_for(lambda m: Done() in m)
    assert ups.messages == [MemberUp("a"), MemberUp("c"), Done()]
    assert everything.messages == [MemberUp("a"), MemberLeft("b"), MemberUp("c"), Done()]


async def test_overlapping_subscriptions_deliver_once(system: ActorSystem, probe: Any) -> None:
    p = probe(system, "p")
    for event_type in (MemberEvent, MemberUp, object, MemberUp):
        system.event_stream.tell(EventStreamSubscribe(event_type=event_type, handler=p.ref))
    system.publish(MemberUp("x"))
    system.publish(Done())
    await p.expect(2)
    assert p.messages == [MemberUp("x"), Done()]


async def test_unsubscribe_one_type_or_all(system: ActorSystem, probe: Any) -> None:
    p = probe(system, "p")
    stream = system.event_stream
    for event_type in (MemberUp, MemberLeft, Done):
        stream.tell(EventStreamSubscribe(event_type=event_type, handler=p.ref))
    stream.tell(EventStreamUnsubscribe(MemberUp, p.ref))
    system.publish(MemberUp("dropped"))
    system.publish(MemberLeft("kept"))
    stream.tell(EventStreamUnsubscribe(None, p.ref))
    system.publish(MemberLeft("dropped too"))
    stream.tell(EventStreamUnsubscribe(None, p.ref))  # idempotent
    stream.tell(EventStreamSubscribe(event_type=Done, handler=p.ref))
    system.publish(Done())
    await p.expect(2)
    assert p.messages == [MemberLeft("kept"), Done()]


async def test_stopped_subscribers_are_pruned(
    system: ActorSystem, probe: Any, dead_letters: Any
) -> None:
    doomed = system.spawn(Behaviors.ignore(), "doomed")
    system.event_stream.tell(EventStreamSubscribe(event_type=MemberUp, handler=doomed))
    await system.stop(doomed)
    # The stream learned of the stop (death watch) before this publish, so nothing is sent to
    # the stopped actor: no dead letter names it.
    system.publish(MemberUp("x"))
    # Two markers: a dead letter for the stopped subscriber would be queued before the second.
    for marker in ("first", "second"):
        system.dead_letters.tell(marker)
        await dead_letters.wait_for(lambda m, marker=marker: any(d.message == marker for d in m))
    assert [d for d in dead_letters.messages if d.recipient == doomed] == []


async def test_without_a_watch_notice_delivery_to_a_dead_subscriber_is_a_dead_letter(
    system: ActorSystem, dead_letters: Any
) -> None:
    # The contrast case for the pruning test: the stream learns that this ref leads nowhere only
    # after the publish already queued behind the subscribe, so that event is a dead letter.
    unknown = system.resolve("/user/never-was")
    system.event_stream.tell(EventStreamSubscribe(event_type=MemberLeft, handler=unknown))
    system.publish(MemberLeft("y"))
    await dead_letters.wait_for(lambda m: any(d.message == MemberLeft("y") for d in m))


def test_subscribe_validates_its_arguments() -> None:
    with pytest.raises(ConfigurationError):
        EventStreamSubscribe(event_type="MemberUp", handler=None)  # type: ignore[arg-type]
