"""`Behaviors.persisted`: what an event-sourced command handler returns to store events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, final

from casty.actors.behaviors import Behavior
from casty.errors import PersistFailed

__all__ = ["Persisted", "persisted"]

Then = Callable[[Any], object]
OnFailure = Callable[[PersistFailed], object]


@final
class Persisted(Behavior[Any]):
    """The effect "store these events, then call ``then``", built by `persisted`.

    Only an event-sourced behavior's ``on_command`` may return it; returned from a plain
    ``Behaviors.receive`` handler it is a failure of that actor.

    Attributes:
        events: the events to store, in order (may be empty: then only ``then`` is deferred).
        then: called with the new state once the events are durable, or ``None``.
        on_failure: called with a `PersistFailed` when they are not stored, or ``None``.
    """

    __slots__ = ("events", "on_failure", "then")

    def __init__(
        self, events: tuple[object, ...], then: Then | None, on_failure: OnFailure | None
    ) -> None:
        self.events = events
        self.then = then
        self.on_failure = on_failure

    def __repr__(self) -> str:
        return f"Persisted({self.events!r})"


def persisted(
    events: object,
    *,
    then: Then | None = None,
    on_failure: OnFailure | None = None,
) -> Behavior[Any]:
    """Store ``events`` and run ``then(new_state)`` once they are durable.

    Return it from the ``on_command`` of `casty.persistence.event_sourced` (it is also
    ``Behaviors.persisted``). The events are applied to the state with ``on_event`` at once, so
    the next command sees them, and written to the journal in one atomic ``write`` with
    consecutive sequence numbers. ``then`` runs inside the actor only after that write returned,
    so it is the place to reply::

        case Deposit(amount, reply_to):
            return Behaviors.persisted(
                Deposited(amount), then=lambda s: reply_to.tell(s.balance)
            )

    Callbacks run in the order of their commands. With no events (``persisted((), then=f)``)
    nothing is written and ``f(state)`` runs once every event of earlier commands is durable:
    the way to answer a query only with durable state.

    Args:
        events: one event, or a ``list`` / ``tuple`` of events (exactly those two types mean
            "several"; a NamedTuple is one event).
        then: ``(new_state) -> None``, sync or async; its exceptions are failures of the actor
            (handled by supervision). To stop after the write, call ``ctx.stop(ctx.self)`` in it.
        on_failure: ``(error) -> None``, sync or async, called with a `PersistFailed` whose
            ``__cause__`` is the reason (`WriteRejected`, `StaleEpoch`, `SequenceConflict`,
            `JournalUnavailable`, or the serializer's `EncodeError`) when the events are not
            stored; typically it replies to the sender. Without it the failure is logged and
            the command is published as a `DeadLetter` whose reason starts with
            ``"persist failed"``.
    """
    if type(events) is list or type(events) is tuple:
        return Persisted(tuple(events), then, on_failure)
    return Persisted((events,), then, on_failure)
