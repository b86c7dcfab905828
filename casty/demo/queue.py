"""The demo's task queue: one event-sourced entity per queue, as in the spec's example.

A queue accepts `SubmitTask` (persisting `TaskAccepted`, then answering `TaskAcked`), runs
its pending tasks in batches (persisting `TasksCompleted`), and answers `GetQueue` with its
durable state. Submitting is idempotent by task id: a task the queue already accepted is
acknowledged again without a new event, so a client may resend a task whose outcome it does
not know (a timeout around a node loss) without creating a duplicate.

The state keeps every accepted and completed id *in journal order, duplicates included*, so
that a check reading the state back sees a duplicate if the journal ever held one (two
writers, a replayed replica entry), instead of a set hiding it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from casty.abc import Journal
from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.actors.ref import ActorRef
from casty.errors import PersistFailed

__all__ = [
    "TYPE_NAME",
    "GetQueue",
    "QueueCommand",
    "QueueSnapshot",
    "QueueState",
    "SubmitTask",
    "TaskAccepted",
    "TaskAcked",
    "TaskRefused",
    "TasksCompleted",
    "task_queue",
]

TYPE_NAME = "tasks"  # the sharded type's name on every node and in the client


# -- commands and replies -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitTask:
    """Enqueue task ``task_id`` (its ``payload`` is the work); answered `TaskAcked` once
    durable on the primary and ``min_acks`` replicas, or `TaskRefused`."""

    task_id: str
    payload: str
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class GetQueue:
    """Ask for the queue's durable state; answered `QueueSnapshot`. Also starts pending work."""

    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class _Work:
    """To itself: run the pending tasks."""


QueueCommand = SubmitTask | GetQueue | _Work


@dataclass(frozen=True, slots=True)
class TaskAcked:
    task_id: str


@dataclass(frozen=True, slots=True)
class TaskRefused:
    """The task's event was not stored (or its outcome is unknown); resend it."""

    task_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """A queue's durable state: ``accepted`` and ``completed`` ids in journal order."""

    queue_id: str
    accepted: tuple[str, ...]
    completed: tuple[str, ...]


# -- events and state ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskAccepted:
    task_id: str
    payload: str


@dataclass(frozen=True, slots=True)
class TasksCompleted:
    task_ids: tuple[str, ...]
    digest: str  # stands for the results: a digest of the payloads the batch processed


@dataclass(frozen=True, slots=True)
class QueueState:
    accepted: tuple[str, ...] = ()
    completed: tuple[str, ...] = ()
    payloads: tuple[tuple[str, str], ...] = ()  # (task id, payload) not yet completed

    def knows(self, task_id: str) -> bool:
        return task_id in self.accepted


def _apply(state: QueueState, event: Any) -> QueueState:
    if isinstance(event, TaskAccepted):
        return QueueState(
            (*state.accepted, event.task_id),
            state.completed,
            (*state.payloads, (event.task_id, event.payload)),
        )
    if isinstance(event, TasksCompleted):
        done = set(event.task_ids)
        return QueueState(
            state.accepted,
            state.completed + event.task_ids,
            tuple(p for p in state.payloads if p[0] not in done),
        )
    return state


def _execute(payloads: tuple[tuple[str, str], ...]) -> str:
    """The work of a batch (hashing the payloads stands for sending mails, rendering PDFs)."""
    digest = hashlib.sha256()
    for _, payload in payloads:
        digest.update(payload.encode())
    return digest.hexdigest()[:16]


def task_queue(journal: Journal) -> Callable[[str], Behavior[QueueCommand]]:
    """The entity factory of the sharded ``tasks`` type, over this node's ``journal``.

    Give the same journal to ``Behaviors.sharded(..., replication=..., journal=journal)``:
    inside the replicated region the entity's writes go through the shard's replicas.
    """

    def factory(queue_id: str) -> Behavior[QueueCommand]:
        # Per incarnation: whether a _Work message is already on its way. A recovered queue
        # resumes its pending tasks on its first command (a submit, a GetQueue).
        scheduled = False

        def schedule(ctx: ActorContext[QueueCommand]) -> None:
            nonlocal scheduled
            if not scheduled:
                scheduled = True
                ctx.self.tell(_Work())

        def on_command(
            ctx: ActorContext[QueueCommand], state: QueueState, cmd: QueueCommand
        ) -> Behavior[QueueCommand]:
            nonlocal scheduled
            match cmd:
                case SubmitTask(task_id, payload, reply_to):
                    ack = TaskAcked(task_id)
                    if state.knows(task_id):  # a resend: acknowledge once the event is durable
                        return Behaviors.persisted((), then=lambda _: reply_to.tell(ack))

                    def refused(error: PersistFailed) -> None:
                        reply_to.tell(TaskRefused(task_id, repr(error.__cause__ or error)))

                    schedule(ctx)
                    return Behaviors.persisted(
                        TaskAccepted(task_id, payload),
                        then=lambda _: reply_to.tell(ack),
                        on_failure=refused,
                    )
                case GetQueue(reply_to):
                    if state.payloads:
                        schedule(ctx)

                    def answer(s: QueueState) -> None:
                        reply_to.tell(QueueSnapshot(queue_id, s.accepted, s.completed))

                    return Behaviors.persisted((), then=answer)
                case _Work():
                    scheduled = False
                    if not state.payloads:
                        return Behaviors.same()
                    batch = state.payloads
                    ids = tuple(task_id for task_id, _ in batch)
                    return Behaviors.persisted(
                        TasksCompleted(ids, _execute(batch)),
                        on_failure=lambda _: schedule(ctx),  # try the batch again
                    )

        return Behaviors.event_sourced(
            entity_id=queue_id,
            journal=journal,
            initial_state=QueueState(),
            on_event=_apply,
            on_command=on_command,
        )

    return factory
