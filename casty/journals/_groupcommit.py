"""Group commit: concurrent writes are flushed together, one transaction per round.

A write that arrives while the store is idle is flushed at once by its caller. Writes that
arrive while a flush is running are queued as `PendingWrite`s whose futures their callers await
(or whose callbacks are called: `GroupCommit.submit_nowait`);
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

With ``depth=2`` (a store that can queue a second statement behind the one it runs: SQLite's
worker thread) up to two rounds are in flight: when several actors' writes wait while nothing
is in flight, they go as two rounds, committed back to back, and from then on each round that
ends makes room for the next while the other commits. The writers of one round then run (in the
event loop) while the other round commits (in the store), instead of both waiting for each
other in turn. Rounds in flight together never share a persistence id, so neither depends on
the other and their order does not matter.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from casty.abc import JournalEntry
from casty.errors import ResourceClosed
from casty.journals._checks import WriteCallback

__all__ = ["GroupCommit", "GroupCommitStatistics", "PendingWrite"]

# Event-loop turns the writer waits, after a round, for its callers to write again: an answered
# command reaches the entity's next write in about three turns (the entity resumes and replies,
# the client resumes and sends, the entity handles the command).
_GATHER_TURNS = 8
# With depth 2, queued writes of at most this many entries in all may go as two rounds
# (`GroupCommit._splits`).
_SPLIT_ENTRIES = 256


@dataclass(slots=True)
class PendingWrite:
    """One caller's write waiting for its round: its ``future`` (`GroupCommit.submit`) or its
    ``callback`` (`GroupCommit.submit_nowait`) gets ``None`` or the error, once."""

    persistence_id: str
    entries: Sequence[JournalEntry]
    future: asyncio.Future[None] | None = field(repr=False)
    callback: WriteCallback | None = field(default=None, repr=False)

    withdrawn: bool = field(default=False, repr=False)

    def abandoned(self) -> bool:
        """Whether the caller gave up (cancelled, or `withdraw`) before the round began."""
        future = self.future
        return self.withdrawn or (future is not None and future.done())

    def withdraw(self) -> None:
        """Give up a `GroupCommit.submit_nowait` write: left out if its round has not begun
        (its callback is then never called); committed or failed as usual if it has."""
        self.withdrawn = True

    def resolve(self, error: BaseException | None = None) -> None:
        """Complete the caller's wait, unless the caller already gave up (cancelled)."""
        future = self.future
        if future is None:
            callback, self.callback = self.callback, None
            if callback is not None:
                callback(error)
            return
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


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
        depth: rounds in flight at once (see the module docstring); more than 1 only for a
            store whose ``flush`` hands its statement over in order and returns before it is
            committed, so that concurrent flushes queue behind each other (SQLite's thread).

    The writer task starts the first time a write has to queue, and stops in `aclose`, which
    lets queued and running writes finish first. The object belongs to one event loop.
    """

    def __init__(self, flush: Flush, *, max_entries: int, name: str, depth: int = 1) -> None:
        self._flush = flush
        self._max_entries = max_entries
        self._name = name
        self._depth = depth
        self._queue: deque[PendingWrite] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a flush is running in the writer or a caller (depth 1, idle path)
        self._closing = False
        # depth > 1: the rounds in flight (each in a task of its own), their persistence ids,
        # and the size of the round that ended last.
        self._flying: set[asyncio.Task[None]] = set()
        self._flying_ids: set[str] = set()
        self._landed = 1
        self._just_landed = False
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
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = PendingWrite(persistence_id, entries, future)
        if not self._busy and not self._queue and not self._flying:
            self._busy = True
            try:
                await self._flush_round([pending])
            finally:
                self._busy = False
                self._wakeup.set()  # the writer, for writes queued meanwhile, or an aclose
            return future.result()
        self._enqueue(pending)
        await future

    def submit_nowait(
        self, persistence_id: str, entries: Sequence[JournalEntry], callback: WriteCallback
    ) -> PendingWrite:
        """Queue a checked write for the writer's next round; ``callback(error)`` runs, in
        the writer task, once the round is committed (``error`` is ``None``) or failed.
        Returns the queued write (`PendingWrite.withdraw`).

        For callers that must not suspend (an actor's handler that waits only if it must): no
        future, and no task of the caller's. The write is always handed to the writer task,
        even when the store is idle.

        Raises:
            ResourceClosed: `aclose` was called (``callback`` is not called).
        """
        if self._closing:
            raise ResourceClosed(f"{self._name} is closed")
        pending = PendingWrite(persistence_id, entries, None, callback)
        self._enqueue(pending)
        return pending

    def _enqueue(self, pending: PendingWrite) -> None:
        """Queue ``pending`` for the writer task, started if it is not running."""
        self._queue.append(pending)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self._name} group commit"
            )
        self._wakeup.set()

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
        if self._flying:
            await asyncio.wait(list(self._flying))
        while self._busy:  # a write flushing in its caller's task finishes too
            self._wakeup.clear()
            await self._wakeup.wait()

    def _closed_under(self, writes: Iterable[PendingWrite], when: str) -> None:
        """Resolve ``writes`` with the `ResourceClosed` of a writer cancelled ``when`` them."""
        for pending in writes:
            pending.resolve(ResourceClosed(f"{self._name} closed {when} the write"))

    def _take_round(self, limit: int | None = None) -> list[PendingWrite]:
        """The next round: at most ``limit`` writes, none of a persistence id in flight."""
        batch: list[PendingWrite] = []
        seen = set(self._flying_ids)
        deferred: deque[PendingWrite] = deque()
        entries = 0
        queue = self._queue
        if limit is None:
            limit = len(queue)
        while queue and len(batch) < limit:
            pending = queue.popleft()
            if pending.abandoned():  # the caller was cancelled before the round began
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
        if self._depth > 1:
            return await self._run_pipelined()
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
                self._closed_under(batch, "during")
                self._closed_under(self._queue, "before")
                raise
            finally:
                self._busy = False
                self._wakeup.set()  # an aclose waiting for the flush to end

    async def _run_pipelined(self) -> None:
        flying = self._flying
        try:
            while True:
                if self._just_landed:
                    # Let the writers of the round that ended write again first, so that the
                    # next round has them (as `_run` does after each round).
                    self._just_landed = False
                    await self._gather(self._landed)
                queue = self._queue
                launched = False
                if not self._busy and queue and len(flying) < self._depth:
                    if not flying and len(queue) > 1 and self._splits(queue):
                        # Nothing in flight: two rounds, committed back to back.
                        launched = self._launch(self._take_round((len(queue) + 1) // 2))
                        self._launch(self._take_round())
                    else:
                        launched = self._launch(self._take_round())
                if launched or self._just_landed:
                    continue
                # Nothing to start (or only writes of ids in flight): wait for a round to end
                # or a write to arrive.
                if self._closing and not queue and not flying and not self._busy:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        except asyncio.CancelledError:
            self._closed_under(self._queue, "before")
            raise

    def _splits(self, queue: deque[PendingWrite]) -> bool:
        """Whether the queued writes are worth two rounds: all of them `submit_nowait` writes
        (actors, which do much between two writes: handle the reply, the next command), with
        few entries in all (at most `_SPLIT_ENTRIES`).

        A second round costs a second commit (a disk sync); it pays only when the writers'
        own work, overlapped with it, is larger. Tasks that just write again (measured: 100
        of them writing single events) lose by it, as do large rounds (entities that batch
        their events), where the entries dominate.
        """
        entries = 0
        for pending in queue:
            if pending.future is not None:
                return False
            entries += len(pending.entries)
            if entries > _SPLIT_ENTRIES:
                return False
        return True

    def _launch(self, batch: list[PendingWrite]) -> bool:
        """Start committing ``batch`` in a task of its own (depth > 1); whether it was not
        empty."""
        if not batch:
            return False
        ids = {pending.persistence_id for pending in batch}
        self._flying_ids |= ids
        task = asyncio.get_running_loop().create_task(self._flush_flying(batch))
        self._flying.add(task)

        def landed(task: asyncio.Task[None]) -> None:
            self._flying.discard(task)
            self._flying_ids -= ids
            self._landed = len(batch)
            self._just_landed = True
            self._wakeup.set()

        task.add_done_callback(landed)
        return True

    async def _flush_flying(self, batch: list[PendingWrite]) -> None:
        try:
            await self._flush_round(batch)
        except asyncio.CancelledError:
            self._closed_under(batch, "during")
            raise

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
