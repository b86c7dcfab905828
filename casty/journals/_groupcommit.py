"""Group commit: concurrent writes are flushed together, one transaction per round.

A write that arrives while the store is idle is flushed at once by its caller. Writes that
arrive while a flush is running are queued as `PendingWrite`s whose futures their callers await;
one writer task then takes everything queued (at most one write per persistence id, and at most
``max_entries`` entries) as one round and hands it to the backend's ``flush``. While a round is
being committed, new writes queue up and form the next round, so the commit cost is shared by
every writer that arrived meanwhile. After a round the writer stays busy for a few event-loop
turns, until as many writes are queued as the round held: its callers usually write again at
once (an entity that answered a command handles the next), and so they commit together rather
than the first of them alone on the idle path. This is the classic group commit of database
logs (Gawlick and Kinkade, "Varieties of concurrency control in IMS/VS Fast Path", IEEE Database
Engineering 8(2), 1985; DeWitt et al., "Implementation techniques for main memory database
systems", SIGMOD 1984).

Deferring a second write of the same persistence id to the next round keeps each round free of
intra-round dependencies, which lets the SQL backends check and insert a round in one statement.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from casty.abc import JournalEntry
from casty.errors import ResourceClosed

__all__ = ["GroupCommit", "GroupCommitStatistics", "PendingWrite"]

# Event-loop turns the writer waits, after a round, for its callers to write again: an answered
# command reaches the entity's next write in about three turns (the entity resumes and replies,
# the client resumes and sends, the entity handles the command).
_GATHER_TURNS = 8


@dataclass(slots=True)
class PendingWrite:
    """One caller's write waiting for its round; ``future`` gets ``None`` or the error."""

    persistence_id: str
    entries: Sequence[JournalEntry]
    future: asyncio.Future[None] = field(repr=False)

    def resolve(self, error: BaseException | None = None) -> None:
        """Complete the caller's wait, unless the caller already gave up (cancelled)."""
        if self.future.done():
            return
        if error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(error)


@dataclass(frozen=True, slots=True)
class GroupCommitStatistics:
    """Counters of a journal's group commit since it was created.

    Attributes:
        writes: `Journal.write` calls handed to a round (cancelled-before-round ones excluded).
        entries: entries in those writes.
        rounds: rounds flushed; ``writes / rounds`` is the average batching factor.
    """

    writes: int = 0
    entries: int = 0
    rounds: int = 0


Flush = Callable[[list[PendingWrite]], Awaitable[None]]


class GroupCommit:
    """Commits writes one round at a time, batching those that arrive during a round.

    Args:
        flush: commits one round and resolves every write of it (result or error). An
            exception escaping ``flush`` is given to the writes it left unresolved.
        max_entries: a round stops growing past this many entries (a larger single write
            still forms a round of its own).
        name: used in the writer task's name and in error messages.

    The writer task starts the first time a write has to queue, and stops in `aclose`, which
    lets queued and running writes finish first. The object belongs to one event loop.
    """

    def __init__(self, flush: Flush, *, max_entries: int, name: str) -> None:
        self._flush = flush
        self._max_entries = max_entries
        self._name = name
        self._queue: deque[PendingWrite] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a flush is running: the store has one write path
        self._closing = False
        self._writes = self._entries = self._rounds = 0  # see GroupCommitStatistics

    async def submit(self, persistence_id: str, entries: Sequence[JournalEntry]) -> None:
        """Commit a checked write, alone or with the writes that arrive meanwhile.

        When nothing is being committed or queued, the write is flushed at once in the
        caller's task (no hand-off to the writer task: one write alone pays only its own
        commit). Otherwise it is queued for the writer's next round.

        Raises:
            ResourceClosed: `aclose` was called.
            Exception: whatever the backend's flush gave this write.

        Cancelling the call leaves the write either committed whole or not at all.
        """
        if self._closing:
            raise ResourceClosed(f"{self._name} is closed")
        loop = asyncio.get_running_loop()
        pending = PendingWrite(persistence_id, entries, loop.create_future())
        if not self._busy and not self._queue:
            self._busy = True
            try:
                await self._flush_round([pending])
            finally:
                self._busy = False
                self._wakeup.set()  # the writer, for writes queued meanwhile, or an aclose
            return pending.future.result()
        self._queue.append(pending)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name=f"{self._name} group commit")
        self._wakeup.set()
        await pending.future

    def statistics(self) -> GroupCommitStatistics:
        """The counters so far."""
        return GroupCommitStatistics(self._writes, self._entries, self._rounds)

    async def aclose(self) -> None:
        """Stop accepting writes, let the queued ones finish, stop the writer; idempotent."""
        self._closing = True
        self._wakeup.set()
        task = self._task
        if task is not None:
            # asyncio.wait does not cancel the writer if this call is cancelled: queued writes
            # still finish and resolve their callers.
            await asyncio.wait([task])
        while self._busy:  # a write flushing in its caller's task finishes too
            self._wakeup.clear()
            await self._wakeup.wait()

    def _take_round(self) -> list[PendingWrite]:
        batch: list[PendingWrite] = []
        seen: set[str] = set()
        deferred: deque[PendingWrite] = deque()
        entries = 0
        queue = self._queue
        while queue:
            pending = queue.popleft()
            if pending.future.done():  # the caller was cancelled before the round began
                continue
            if batch and entries + len(pending.entries) > self._max_entries:
                queue.appendleft(pending)
                break
            if pending.persistence_id in seen:
                deferred.append(pending)
                continue
            seen.add(pending.persistence_id)
            batch.append(pending)
            entries += len(pending.entries)
        deferred.extend(queue)
        self._queue = deferred
        return batch

    async def _run(self) -> None:
        while True:
            if self._busy or not self._queue:
                if self._closing and not self._queue:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take_round()
            if not batch:
                continue
            self._busy = True
            try:
                await self._flush_round(batch)
                await self._gather(len(batch))
            except asyncio.CancelledError:
                for pending in batch:
                    pending.resolve(ResourceClosed(f"{self._name} closed during the write"))
                for pending in self._queue:
                    pending.resolve(ResourceClosed(f"{self._name} closed before the write"))
                raise
            finally:
                self._busy = False
                self._wakeup.set()  # an aclose waiting for the flush to end

    async def _gather(self, expected: int) -> None:
        """Stay busy while the callers just resolved write again, so the next round has them.

        Those callers run first, and many write again a few event-loop turns later (an entity
        answers its command and handles the next). Taking the next round at once would leave
        them to a round of their own; going idle would let the first of them commit alone on
        the idle path. So wait, one turn at a time, until the queue holds as many writes as
        the round just committed, or `_GATHER_TURNS` turns have passed. A turn of an
        otherwise idle loop costs microseconds; a round, a commit.
        """
        queue = self._queue
        for _ in range(_GATHER_TURNS):
            if len(queue) >= expected or self._closing:
                return
            await asyncio.sleep(0)

    async def _flush_round(self, batch: list[PendingWrite]) -> None:
        self._writes += len(batch)
        self._entries += sum(len(pending.entries) for pending in batch)
        self._rounds += 1
        try:
            await self._flush(batch)
        except Exception as exc:
            for pending in batch:
                pending.resolve(exc)
