"""`Channel`: a node's pushes to one replica store travel together, in `ReplicateBatch` messages.

Each entity's write pushes its own entries, but the writes of many entities complete in the
same journal round and so push in the same event-loop turn: sending them as one message per
store (answered by one `ReplicatedBatch`) pays the message costs (an ask, encoding, a frame,
the store's mailbox, the answer) once per batch rather than once per entity write, and the
store writes the batch's entries at once (its journal's group commit makes that one round).
A batch leaves on the event-loop turn after its first push, with every push made meanwhile.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from casty.errors import AskTimeout, ReplicationError
from casty.replication.protocol import Replicate, ReplicateBatch, ReplicatedBatch

if TYPE_CHECKING:
    from casty.actors.ref import ActorRef
    from casty.actors.system import ActorSystem

__all__ = ["Channel", "channel", "retrieve"]

_MAX_BATCH = 512  # pushes per batch

# One channel per system, store and timeout while some journal holds it (journals keep theirs).
_channels: weakref.WeakValueDictionary[tuple[ActorSystem, ActorRef[Any], float], Channel] = (
    weakref.WeakValueDictionary()
)
_asking: set[asyncio.Task[None]] = set()  # the batches' asks (held: the loop's refs are weak)


def channel(system: ActorSystem, store: ActorRef[Any], timeout: float) -> Channel:
    """The node's channel to ``store`` for pushes that wait ``timeout`` seconds (shared by
    every journal of ``system`` pushing to it with that timeout)."""
    key = (system, store, timeout)
    found = _channels.get(key)
    if found is None:
        found = _channels[key] = Channel(system, store)
    return found


def retrieve(future: asyncio.Future[Any]) -> None:
    """A done callback for a `Channel.send` future no one awaits: marks its error as seen."""
    if not future.cancelled():
        future.exception()


class Channel:
    """The pushes of one node to one replica store, sent in `ReplicateBatch` messages.

    A batch leaves on the event-loop turn after its first push, with the pushes made in that
    turn; a busy node's turns are long, so its batches are large. The pushes of a channel wait
    the same timeout, so a batch's deadlines differ by at most that turn.
    """

    __slots__ = ("__weakref__", "_loop", "_queue", "_scheduled", "_store", "_system")

    def __init__(self, system: ActorSystem, store: ActorRef[Any]) -> None:
        self._system = system
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._queue: list[tuple[Replicate, asyncio.Future[Any], float]] = []
        self._scheduled = False  # a `_send` is due on the next turn

    def send(self, request: Replicate, deadline: float) -> asyncio.Future[Any]:
        """Push ``request`` (``reply_to`` None) with the node's other pushes to the store.

        ``deadline`` (a loop time) is now + the channel's timeout.

        Returns:
            A future that gets the store's answer to ``request`` (an int ``n`` for
            ``Replicated(<id>, n)``, see `ReplicatedBatch`), or `AskTimeout` at ``deadline``
            (at most a loop turn and the ask's 10 ms late), or the error of the batch's ask
            (`ActorStopped`, say), or `ReplicationError` when the store could not store it.
            Cancelling the future drops a push not yet sent. A caller that stops waiting for
            it adds `retrieve`.
        """
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.append((request, future, deadline))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        self._scheduled = False
        items = [item for item in self._queue[:_MAX_BATCH] if not item[1].done()]
        del self._queue[:_MAX_BATCH]
        if items:
            task = self._loop.create_task(self._ask(items))
            _asking.add(task)
            task.add_done_callback(_asking.discard)
        if self._queue:  # more than a batch's worth
            self._scheduled = True
            self._loop.call_soon(self._send)

    async def _ask(self, items: list[tuple[Replicate, asyncio.Future[Any], float]]) -> None:
        try:
            pushes = [request for request, _, _ in items]
            # The items' deadlines differ by at most the turn that gathered them.
            left = max(deadline for _, _, deadline in items) - self._loop.time()
            if left <= 0:
                raise AskTimeout(f"replica store {self._store}: the pushes' time ran out")
            reply = await self._system.ask(
                self._store, lambda r: ReplicateBatch.batch_of(pushes, r), timeout=left
            )
            self._resolve(items, reply)
        except Exception as exc:
            for _, future, _ in items:
                if not future.done():
                    future.set_exception(exc)
        except asyncio.CancelledError:  # the loop is closing: so are the writes waiting
            for _, future, _ in items:
                future.cancel()
            raise

    def _resolve(
        self, items: list[tuple[Replicate, asyncio.Future[Any], float]], reply: object
    ) -> None:
        answers: tuple[Any, ...] = ()
        if isinstance(reply, ReplicatedBatch) and len(reply.answers) == len(items):
            answers = reply.answers
        for i, (_, future, _) in enumerate(items):
            if future.done():
                continue
            answer = answers[i] if answers else None
            if answer is None:
                future.set_exception(
                    ReplicationError(f"replica store {self._store} could not store the push")
                )
            else:
                future.set_result(answer)
