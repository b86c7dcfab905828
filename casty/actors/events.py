"""The event stream (publish/subscribe by event type) and dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.ref import ActorRef
from casty.actors.signals import Terminated
from casty.errors import ConfigurationError

if TYPE_CHECKING:
    from casty.actors.context import ActorContext

__all__ = [
    "DeadLetter",
    "DeadLetterReason",
    "EventStreamPublish",
    "EventStreamSubscribe",
    "EventStreamUnsubscribe",
]

E = TypeVar("E")


class DeadLetterReason(StrEnum):
    """Why a message was dropped (the ``reason`` of a `DeadLetter`)."""

    RECIPIENT_STOPPED = "recipient stopped"
    """Sent to an actor that had stopped, or left in its mailbox when it stopped."""
    MAILBOX_FULL = "mailbox full"
    """The recipient's bounded mailbox was at its capacity."""
    LATE_ASK_REPLY = "late ask reply"
    """A reply to an ask that had already completed (timed out, failed or been cancelled)."""
    UNHANDLED = "unhandled"
    """The recipient's behavior returned ``Behaviors.unhandled()`` (or is ``empty``)."""
    STASH_OVERFLOW = "stash overflow"
    """``StashBuffer.stash`` on a full stash."""
    STASH_DISCARDED = "stash discarded on restart"
    """Stashed when the actor restarted, which starts with an empty stash."""
    UNKNOWN_RECIPIENT = "unknown recipient"
    """Sent to an address that resolves to no actor."""
    SENT_TO_DEAD_LETTERS = "sent to dead letters"
    """Told directly to ``system.dead_letters``."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that was not delivered, published on the event stream.

    Subscribe to it (``EventStreamSubscribe(event_type=DeadLetter, handler=ref)``) to observe
    drops. A dead letter about a dead letter is logged but not published again.

    Attributes:
        message: the dropped message.
        recipient: the ref it was sent to.
        reason: a `DeadLetterReason` (a ``str``).
    """

    message: object
    recipient: ActorRef[Any]
    reason: str


@dataclass(frozen=True, slots=True)
class EventStreamSubscribe(Generic[E]):
    """Deliver every published event that is an instance of ``event_type`` to ``handler``.

    Subclasses match: subscribing to a base class receives events of its subclasses. A handler
    subscribed to several matching types receives each event once. Subscribing twice is
    harmless. The handler is watched, and removed when it stops.

    Raises:
        ConfigurationError: ``event_type`` is not a class, or ``handler`` is not an ActorRef.
    """

    event_type: type[E]
    handler: ActorRef[E]

    def __post_init__(self) -> None:
        if not isinstance(self.event_type, type):
            raise ConfigurationError(f"event_type must be a class, got {self.event_type!r}")
        if not isinstance(self.handler, ActorRef):
            raise ConfigurationError(f"handler must be an ActorRef, got {self.handler!r}")


@dataclass(frozen=True, slots=True)
class EventStreamUnsubscribe:
    """Stop delivering ``event_type`` (every type when ``None``) to ``handler``; idempotent."""

    event_type: type | None
    handler: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class EventStreamPublish:
    """Publish ``event`` to every subscriber of its class or of a base class."""

    event: object


EventStreamCommand = EventStreamSubscribe[Any] | EventStreamUnsubscribe | EventStreamPublish


def event_stream_behavior() -> Behavior[Any]:
    """The event stream actor (``/system/eventStream``): subscriptions by type, watched handlers.

    Handled synchronously (a plain handler), so publishing costs one mailbox hop.
    """

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        subscriptions: dict[ActorRef[Any], set[type]] = {}
        routes: dict[type, tuple[ActorRef[Any], ...]] = {}  # event class -> subscribers

        def route(event_class: type) -> tuple[ActorRef[Any], ...]:
            found = routes.get(event_class)
            if found is None:
                found = tuple(
                    ref
                    for ref, types in subscriptions.items()
                    if any(issubclass(event_class, t) for t in types)
                )
                routes[event_class] = found
            return found

        def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if type(msg) is EventStreamPublish:
                event = msg.event
                for ref in route(type(event)):
                    ref.tell(event)
            elif type(msg) is EventStreamSubscribe:
                types = subscriptions.get(msg.handler)
                if types is None:
                    types = subscriptions[msg.handler] = set()
                    ctx.watch(msg.handler)
                types.add(msg.event_type)
                routes.clear()
            elif type(msg) is EventStreamUnsubscribe:
                types = subscriptions.get(msg.handler)
                if types is not None:
                    if msg.event_type is None:
                        types.clear()
                    else:
                        types.discard(msg.event_type)
                    if not types:
                        del subscriptions[msg.handler]
                        ctx.unwatch(msg.handler)
                    routes.clear()
            elif type(msg) is Terminated:
                if subscriptions.pop(msg.ref, None) is not None:
                    routes.clear()
            else:
                return Behaviors.unhandled()
            return Behaviors.same()

        return Behaviors.receive(receive)

    return Behaviors.setup(setup)
