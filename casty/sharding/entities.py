"""Entity bookkeeping of a region: entity records, child names, and the idleness probe."""

from __future__ import annotations

from collections import deque
from typing import Any, final
from urllib.parse import quote, unquote

from casty.actors.cell import LocalActorRef

__all__ = ["ACTIVE", "FENCED", "HANDOFF", "PASSIVATE", "EntityRecord", "child_name", "is_idle"]

# Why an entity record is stopping (ACTIVE: it is not).
ACTIVE, PASSIVATE, HANDOFF, FENCED = range(4)

# Actor names allow RFC 3986 unreserved characters and '%': everything else is %-escaped, and
# the names "." and ".." (which mean "here" and "parent" in paths) are escaped too.
_SPECIAL = {"": "%", ".": "%2E", "..": "%2E%2E"}


def child_name(entity_id: str) -> str:
    """The entity's child actor name: its id, %-escaped (``"%"`` for the empty id)."""
    name = quote(entity_id, safe="")
    return _SPECIAL.get(name, name)


def entity_id_of(name: str) -> str:
    """The inverse of `child_name`."""
    return "" if name == "%" else unquote(name)


@final
class EntityRecord:
    """One live entity of a region.

    ``buffer`` is None while messages go straight to the entity (the region's fast path) and a
    deque while it stops (``reason``): messages that arrive meanwhile wait there, in order.
    ``tick`` is the passivation tick of its last message.
    """

    __slots__ = ("buffer", "entity_id", "reason", "ref", "shard_id", "tick")

    def __init__(self, entity_id: str, shard_id: int, ref: LocalActorRef[Any], tick: int) -> None:
        self.entity_id = entity_id
        self.shard_id = shard_id
        self.ref = ref
        self.tick = tick
        self.buffer: deque[Any] | None = None
        self.reason = ACTIVE

    def stop_delivering(self, reason: int) -> None:
        """Hold further messages in ``buffer`` (kept if already stopping)."""
        if self.buffer is None:
            self.buffer = deque()
        if self.reason == ACTIVE or reason in (HANDOFF, FENCED):
            self.reason = reason


def is_idle(ref: LocalActorRef[Any]) -> bool:
    """Whether the entity has nothing queued, running, stashed or awaited.

    An entity stopped while idle loses nothing; this is how a region lets in-flight messages
    finish before a handoff or a passivation. The actor core has no drain notification, so the
    region polls this (only while some entity is stopping); it reads the cell's private state,
    which casty's own layers may do. An event-sourced entity is busy while it recovers or a
    write is in flight (a task, and possibly stashed commands).
    """
    cell = ref._cell
    if cell._scheduled or cell._mailbox:
        return False
    extras = cell._extras
    if extras is None:
        return True
    if extras.tasks:
        return False
    stashes = extras.stashes
    return not stashes or all(stash.is_empty for stash in stashes)
