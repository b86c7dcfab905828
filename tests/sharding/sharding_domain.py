"""Entities and messages shared by the sharding tests and their node processes.

Both the test process and ``sharding_node.py`` import this module under the same name, so its
messages decode on every node by their ``module:qualname``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from casty import ActorContext, ActorRef, Behavior, Behaviors, Journal


@dataclass(frozen=True, slots=True)
class Add:
    """Append ``n`` to the entity's log; the entity answers `Added` once it is durable."""

    n: int
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Added:
    """The event of `Add`, and its acknowledgement (with the entity id)."""

    n: int
    entity_id: str = ""


@dataclass(frozen=True, slots=True)
class GetLog:
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Log:
    entity_id: str
    values: tuple[int, ...]
    node: str


def log_entity(journal: Journal) -> Any:
    """An event-sourced entity whose state is the tuple of every ``n`` it was told to add."""

    def factory(entity_id: str) -> Behavior[Any]:
        def on_event(state: tuple[int, ...], event: Added) -> tuple[int, ...]:
            return (*state, event.n)

        def on_command(ctx: ActorContext[Any], state: tuple[int, ...], cmd: Any) -> Any:
            if isinstance(cmd, Add):
                reply_to, n = cmd.reply_to, cmd.n
                return Behaviors.persisted(
                    Added(n), then=lambda _s: reply_to.tell(Added(n, entity_id))
                )
            if isinstance(cmd, GetLog):
                cmd.reply_to.tell(Log(entity_id, state, ctx.system.address))
            return Behaviors.same()

        empty: tuple[int, ...] = ()
        return Behaviors.event_sourced(
            entity_id=entity_id,
            journal=journal,
            initial_state=empty,
            on_event=on_event,
            on_command=on_command,
        )

    return factory
