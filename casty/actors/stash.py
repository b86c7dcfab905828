"""`StashBuffer`: messages set aside by an actor and handled later, in order."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Generic, TypeVar

from casty.actors.events import DeadLetterReason
from casty.errors import StashOverflow

if TYPE_CHECKING:
    from casty.actors.behaviors import Behavior
    from casty.actors.cell import ActorCell

__all__ = ["StashBuffer"]

M = TypeVar("M")


class StashBuffer(Generic[M]):
    """A bounded buffer of messages, obtained through `Behaviors.with_stash`.

    The typical use is an actor that stashes what it cannot handle yet (while it loads its
    state, say) and then returns ``stash.unstash_all(ready_behavior)``. Stashed messages left
    when the actor stops become dead letters ("recipient stopped"); a restart discards them as
    dead letters ("stash discarded on restart").

    Only the owning actor may use its stash (from its handlers and setup).
    """

    __slots__ = ("_buffer", "_capacity", "_cell")

    def __init__(self, cell: ActorCell[M], capacity: int) -> None:
        self._cell = cell
        self._capacity = capacity
        self._buffer: deque[M] = deque()

    @property
    def capacity(self) -> int:
        """The most messages the stash holds."""
        return self._capacity

    @property
    def size(self) -> int:
        """How many messages are stashed (0 when empty)."""
        return len(self._buffer)

    @property
    def is_empty(self) -> bool:
        """Whether nothing is stashed."""
        return not self._buffer

    @property
    def is_full(self) -> bool:
        """Whether `stash` would overflow."""
        return len(self._buffer) >= self._capacity

    def stash(self, message: M) -> None:
        """Append ``message``.

        Raises:
            StashOverflow: the stash is full; ``message`` is published as a dead letter
                ("stash overflow") and, unless the handler catches the error, the actor's
                supervisor handles the failure.
        """
        if len(self._buffer) >= self._capacity:
            cell = self._cell
            cell._system._dead_letter(message, cell._ref, DeadLetterReason.STASH_OVERFLOW)
            raise StashOverflow(f"stash of {cell._ref.path} is full ({self._capacity} messages)")
        self._buffer.append(message)

    def unstash_all(self, behavior: Behavior[M]) -> Behavior[M]:
        """Put every stashed message back at the head of the mailbox, oldest first, and return
        ``behavior`` (return it from the handler: it handles those messages next, before
        anything else in the mailbox). Ignores the mailbox bound. Empties the stash."""
        if self._buffer:
            buffer = self._buffer
            self._buffer = deque()
            self._cell._prepend(buffer)
        return behavior

    def _drain(self) -> deque[M]:
        """Take every stashed message out (the cell turns them into dead letters)."""
        buffer = self._buffer
        self._buffer = deque()
        return buffer
