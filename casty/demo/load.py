"""`TaskLoad`: the demo's client side. Submits tasks, retries the unknown ones, checks the result.

Task ``i`` has the id ``<run>-t<i>`` and goes to queue ``<run>-q<i mod queues>``. Each queue
has its own ``window`` submitters, so a queue whose shard is unserved for a while (its node
was killed) holds back only its own tasks, and the ack times of each queue show how long its
shard was unserved. A submit whose outcome the client does not know (no answer within
``ask_timeout``, or `TaskRefused`) is resent with the same task id until it is acknowledged:
the queue acknowledges a task it already holds without storing it again, so resending loses
nothing and duplicates nothing.

`TaskLoad.read_back` then asks every queue for its durable state (waiting for their pending
tasks to complete) and compares it with what the client saw acknowledged: an acknowledged
task missing from its queue is *lost*; an id held twice in a queue's accepted or completed
log is *duplicated*.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from casty.abc import Address
from casty.client import ClientShardRef, ClusterClient
from casty.demo.queue import TYPE_NAME, GetQueue, QueueSnapshot, SubmitTask, TaskAcked
from casty.errors import ActorStopped, AskTimeout, MailboxFull, StashOverflow
from casty.sharding import ShardEnvelope, shard_id_for

__all__ = ["Ack", "TaskLoad", "Verdict", "percentile"]


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledged submit: when its successful attempt was sent and when the ack came
    (event-loop clock, seconds)."""

    sent: float
    at: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """What reading the queues back found, against the client's acknowledgements.

    Attributes:
        acknowledged: tasks the client saw acknowledged.
        completed: distinct task ids in the queues' completed logs.
        lost: acknowledged tasks that no queue holds.
        duplicated: extra occurrences of ids in the accepted and completed logs.
        pending: accepted tasks still not completed when the read-back ended.
        unread: queues that did not answer the read-back.
        examples: a few lost or duplicated ids, for the report.
    """

    acknowledged: int
    completed: int
    lost: int
    duplicated: int
    pending: int
    unread: int
    examples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, pending or unread."""
        return not (self.lost or self.duplicated or self.pending or self.unread)


@dataclass
class _QueueLoad:
    queue_id: str
    index: int
    next_round: int = 0
    acks: list[Ack] = field(default_factory=list)


class TaskLoad:
    """Submits tasks to the demo's queues through ``client`` and records every ack.

    Args:
        client: an open `ClusterClient` of the demo cluster.
        ref: ``await client.shard_ref(TYPE_NAME, num_shards=shards)``.
        run_id: a prefix of every queue and task id (keeps runs apart in a shared journal).
        queues: task queues (entities).
        tasks: tasks to submit, or None to submit until `stop` is called.
        window: submits in flight per queue.
        ask_timeout: seconds without an answer after which a submit is resent.
        rate: at most this many submits (resends included) per second overall, or None.
        stall_timeout: seconds without any ack after which the run gives up (the tasks not
            acknowledged by then are reported as such).
    """

    def __init__(
        self,
        client: ClusterClient,
        ref: ClientShardRef,
        *,
        run_id: str,
        queues: int = 64,
        tasks: int | None = None,
        window: int = 4,
        ask_timeout: float = 2.0,
        rate: float | None = None,
        stall_timeout: float = 30.0,
    ) -> None:
        self.client = client
        self.ref = ref
        self.run_id = run_id
        self.tasks = tasks
        self.window = window
        self.ask_timeout = ask_timeout
        self.rate = rate
        self.stall_timeout = stall_timeout
        self.queues = [_QueueLoad(f"{run_id}-q{i:03d}", i) for i in range(queues)]
        self.latencies: dict[str, float] = {}  # task id -> seconds from first send to ack
        self.submitted = 0
        self.resent = 0
        self.resend_reasons: Counter[str] = Counter()
        self.stalled = False
        self.started = 0.0
        self.finished = 0.0
        self._last_ack = 0.0
        self._stopping = False
        self._next_slot = 0.0
        self._milestones: dict[int, list[Callable[[], object]]] = {}

    @property
    def acknowledged(self) -> int:
        """Tasks acknowledged so far."""
        return len(self.latencies)

    def on_acknowledged(self, count: int, callback: Callable[[], object]) -> None:
        """Call ``callback`` once, right when the ``count``-th task is acknowledged (before any
        other ack is counted); never if that count is not reached or was already passed."""
        self._milestones.setdefault(count, []).append(callback)

    def stop(self) -> None:
        """Submit no new task; the ones under way are still resent until acknowledged."""
        self._stopping = True

    async def run(self) -> None:
        """Submit until done (``tasks`` reached or `stop`), or stalled (see ``stall_timeout``)."""
        loop = asyncio.get_running_loop()
        self.started = self._last_ack = loop.time()
        async with asyncio.TaskGroup() as group:
            for queue in self.queues:
                for _ in range(self.window):
                    group.create_task(self._submitter(queue))
        self.finished = loop.time()

    def _next_task(self, queue: _QueueLoad) -> int | None:
        if self._stopping or self.stalled:
            return None
        index = queue.next_round * len(self.queues) + queue.index
        if self.tasks is not None and index >= self.tasks:
            return None
        queue.next_round += 1
        return index

    def task_id(self, index: int) -> str:
        """The id of task ``index``."""
        return f"{self.run_id}-t{index:07d}"

    async def _submitter(self, queue: _QueueLoad) -> None:
        while (index := self._next_task(queue)) is not None:
            self.submitted += 1
            await self._submit(queue, self.task_id(index), f"job-{index}")

    async def _submit(self, queue: _QueueLoad, task_id: str, payload: str) -> None:
        loop = asyncio.get_running_loop()
        first = loop.time()
        while True:
            await self._pace()
            sent = loop.time()
            if sent - self._last_ack > self.stall_timeout:
                self.stalled = True
                return
            try:
                reply: Any = await self.client.ask(
                    self.ref,
                    lambda r: ShardEnvelope(queue.queue_id, SubmitTask(task_id, payload, r)),
                    timeout=self.ask_timeout,
                )
            except (AskTimeout, ActorStopped, MailboxFull, StashOverflow) as exc:
                # Unknown outcome (no answer) or dropped on the way (the entity was stopping,
                # its shard moving): resend under the same id.
                self.resent += 1
                self.resend_reasons[type(exc).__name__] += 1
                continue
            if isinstance(reply, TaskAcked):
                now = self._last_ack = loop.time()
                self.latencies[task_id] = now - first
                queue.acks.append(Ack(sent, now))
                for callback in self._milestones.pop(self.acknowledged, ()):
                    callback()
                return
            self.resent += 1  # TaskRefused: not stored, or unknown; back off a little
            self.resend_reasons[type(reply).__name__] += 1
            await asyncio.sleep(0.1)

    async def _pace(self) -> None:
        if self.rate is None:
            return
        now = asyncio.get_running_loop().time()
        self._next_slot = max(self._next_slot + 1.0 / self.rate, now)
        if self._next_slot > now:
            await asyncio.sleep(self._next_slot - now)

    # -- what the run saw ----------------------------------------------------------------------

    def queues_on(self, node: Address, shards: int) -> list[str]:
        """The queues whose shard the client's latest topology places on ``node``."""
        snapshot = self.client.topology
        homes = snapshot.shard_allocations.get(TYPE_NAME, {}) if snapshot is not None else {}
        return [
            q.queue_id for q in self.queues if homes.get(shard_id_for(q.queue_id, shards)) == node
        ]

    def served_again(self, since: float) -> float | None:
        """Seconds from ``since`` (a node's loss) until every queue acknowledged again.

        Per queue, the time from ``since`` to its first ack after it; the figure is the
        largest, over the queues that still had tasks after ``since`` (None if none had).
        That covers the queues whose primary was on the lost node and those whose replica
        was there (their writes wait for a new replica).
        """
        firsts = [next((a.at for a in q.acks if a.at >= since), None) for q in self.queues]
        waits = [first - since for first in firsts if first is not None]
        return max(waits) if waits else None

    def longest_gap(self, start: float, end: float) -> tuple[float, str]:
        """The longest time between two consecutive acks of one queue that overlaps
        ``start..end``, and the queue ("" when none).

        A queue's gap counts only between its own acks, so the end of its share of the tasks
        is not a gap.
        """
        worst, where = 0.0, ""
        for queue in self.queues:
            times = [a.at for a in queue.acks]
            for before, after in itertools.pairwise(times):
                if after >= start and before <= end and after - before > worst:
                    worst, where = after - before, queue.queue_id
        return worst, where

    async def read_back(self, timeout: float = 30.0) -> Verdict:
        """Read every queue's durable state and compare it with the acknowledged tasks.

        Waits (up to ``timeout`` seconds) for each queue to complete its accepted tasks.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        snapshots = await asyncio.gather(*(self._read(q.queue_id, deadline) for q in self.queues))
        accepted: Counter[str] = Counter()
        completed: Counter[str] = Counter()
        unread = 0
        for snapshot in snapshots:
            if snapshot is None:
                unread += 1
                continue
            accepted.update(snapshot.accepted)
            completed.update(snapshot.completed)
        lost = [t for t in self.latencies if t not in accepted]
        duplicates = [t for c in (accepted, completed) for t, n in c.items() if n > 1]
        duplicated = sum(n - 1 for c in (accepted, completed) for n in c.values())
        pending = sum(1 for t in accepted if t not in completed)
        return Verdict(
            acknowledged=self.acknowledged,
            completed=len(completed),
            lost=len(lost),
            duplicated=duplicated,
            pending=pending,
            unread=unread,
            examples=tuple(sorted(set(lost + duplicates))[:5]),
        )

    async def _read(self, queue_id: str, deadline: float) -> QueueSnapshot | None:
        loop = asyncio.get_running_loop()
        last: QueueSnapshot | None = None
        while loop.time() < deadline:
            try:
                last = await self.client.ask(
                    self.ref,
                    lambda r: ShardEnvelope(queue_id, GetQueue(r)),
                    timeout=min(self.ask_timeout, max(deadline - loop.time(), 0.01)),
                )
            except (AskTimeout, ActorStopped, MailboxFull, StashOverflow):
                continue
            if last is not None and set(last.accepted) <= set(last.completed):
                return last
            await asyncio.sleep(0.05)  # the queue is still working through its pending tasks
        return last


def percentile(values: Iterable[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of ``values`` by the nearest-rank method; NaN if empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(math.ceil(fraction * len(ordered)) - 1, 0)
    return ordered[rank]
