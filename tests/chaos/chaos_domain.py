"""The chaos tests' counter: an event-sourced entity whose state is the list of applied op ids.

Each `Increment` carries a unique op id and the state keeps every applied id (not a sum), so the
history checker (`casty.testing.check_history`) can tell a lost op from a duplicated or a
phantom one. Messages live here so their wire names (``chaos_domain:...``) are the same in the
node processes and in the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from casty import ActorContext, ActorRef, Behavior, Behaviors
from casty.abc import Journal
from casty.errors import PersistFailed, ReplicationError, SequenceConflict, WriteRejected

TYPE_NAME = "counters"
NUM_SHARDS = 30


@dataclass(frozen=True)
class Increment:
    op: str
    reply_to: ActorRef[Any]


@dataclass(frozen=True)
class Read:
    reply_to: ActorRef[Any]


@dataclass(frozen=True)
class Applied:
    """The event: op ``op`` was applied."""

    op: str


@dataclass(frozen=True)
class Acked:
    op: str


@dataclass(frozen=True)
class Failed:
    """The command failed; ``refused``: certainly not applied (else the result is unknown)."""

    op: str
    refused: bool
    error: str


@dataclass(frozen=True)
class State:
    entity_id: str
    ops: list[str]
    node: str


def refused_for_sure(cause: BaseException | None) -> bool:
    """Whether a failed persist's cause means the events were never applied anywhere.

    A journal or replica that refused the write (`WriteRejected`, including `StaleEpoch`: a
    replaced primary, whose entries must never become visible), a taken sequence number, or a
    replication error raised before any write (too few replica stores). A `ReplicationTimeout`
    (and anything else) leaves the result unknown: the events are in the primary's journal and
    maybe on a replica.
    """
    return isinstance(cause, WriteRejected | SequenceConflict) or type(cause) is ReplicationError


def counter(journal: Journal) -> Callable[[str], Behavior[Any]]:
    """The entity factory of the ``counters`` type over the node's ``journal``."""

    def factory(entity_id: str) -> Behavior[Any]:
        def on_event(state: tuple[str, ...], event: Applied) -> tuple[str, ...]:
            return (*state, event.op)

        def on_command(ctx: ActorContext[Any], state: tuple[str, ...], cmd: Any) -> Behavior[Any]:
            if isinstance(cmd, Increment):
                op, reply_to = cmd.op, cmd.reply_to

                def failed(error: PersistFailed) -> None:
                    cause = error.__cause__
                    reply_to.tell(Failed(op, refused_for_sure(cause), repr(cause)))

                return Behaviors.persisted(
                    Applied(op), then=lambda s: reply_to.tell(Acked(op)), on_failure=failed
                )
            if isinstance(cmd, Read):
                cmd.reply_to.tell(State(entity_id, list(state), str(ctx.system.address)))
            return Behaviors.same()

        return Behaviors.event_sourced(
            entity_id=entity_id,
            journal=journal,
            initial_state=(),
            on_event=on_event,
            on_command=on_command,
        )

    return factory
