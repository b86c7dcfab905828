"""`ReplicatedJournal`: the primary side; a journal whose writes count once replicas confirm."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, final

from casty.abc import Journal, JournalEntry
from casty.errors import (
    AskTimeout,
    ConfigurationError,
    ReplicationError,
    ReplicationTimeout,
    StaleEpoch,
)
from casty.replication._reads import LocalReads
from casty.replication.config import ReplicationConfig
from casty.replication.protocol import ReplicaBehind, ReplicaFenced, Replicate, Replicated

if TYPE_CHECKING:
    from casty.actors.ref import ActorRef
    from casty.actors.system import ActorSystem

__all__ = ["ReplicatedJournal"]

_CATCH_UP = 1000  # most entries one catch-up message carries
_batches = itertools.count(1)


@final
class ReplicatedJournal(LocalReads):
    """The journal of a primary: writes go to ``local``, then to replica stores, then count.

    Pass it as the ``journal`` of ``Behaviors.event_sourced`` (with the entity's ``epoch``, the
    fencing token its coordinator granted). ``write`` stores the entries in ``local`` first
    (so the primary's own log is never behind what it pushed), pushes them to every store of
    ``replicas`` (`casty.replication.replica_store` actors, normally on other nodes), and
    returns once ``config.min_acks`` of them have stored them. A store that misses earlier
    entries is caught up from ``local`` (from its highest sequence number + 1) within the same
    write. Stores beyond the first ``min_acks`` are not waited for; the next write catches them
    up. Every other method reads ``local`` only.

    Errors of ``write`` (the command's ``on_failure`` gets them as the ``__cause__`` of its
    `PersistFailed`):

    - `ReplicationTimeout`: fewer than ``min_acks`` stores confirmed within
      ``config.ack_timeout`` seconds. The entries are in ``local`` and maybe on some replicas,
      so the command's result is *unknown*, never a success; the entity then fails (its
      supervisor decides) and a restarted one replays what ``local`` holds.
    - `StaleEpoch`: ``local`` or a store holds a newer epoch for the id: this primary has been
      replaced and must not write again (the command is refused).
    - anything ``local.write`` raises.

    Cancellation: the write stops waiting; entries already pushed may still be stored.

    ``shard`` (cluster sharding's use) is the entities' shard id: pushes name it, so stores
    fence them by the shard's epoch (`casty.replication.protocol.Replicate`); -1 for none.

    Raises:
        ConfigurationError: ``replicas`` has fewer stores than ``config.min_acks``.
    """

    def __init__(
        self,
        local: Journal,
        replicas: Sequence[ActorRef[Any]],
        config: ReplicationConfig,
        system: ActorSystem,
        *,
        shard: int = -1,
    ) -> None:
        if not isinstance(config, ReplicationConfig):
            raise ConfigurationError(f"config must be a ReplicationConfig, got {config!r}")
        if len(replicas) < config.min_acks:
            raise ConfigurationError(
                f"min_acks={config.min_acks} needs at least as many replica stores, "
                f"got {len(replicas)}"
            )
        self._local = local
        self._replicas = tuple(replicas)
        self._config = config
        self._system = system
        self._shard = shard

    @property
    def local(self) -> Journal:
        """The primary's own journal."""
        return self._local

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        await self._local.write(entries)
        if not entries or not self._replicas:
            return
        batch = tuple(entries)
        need = self._config.min_acks
        epoch = batch[-1].epoch
        if need == 0:
            for store in self._replicas:
                store.tell(Replicate(batch, None, next(_batches), self._shard, epoch))
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.ack_timeout
        pushes = [
            asyncio.ensure_future(self._push(s, batch, deadline, epoch)) for s in self._replicas
        ]
        pending: set[asyncio.Future[None]] = set(pushes)
        acks = 0
        cause: BaseException | None = None
        try:
            while acks < need and len(pending) >= need - acks:
                left = deadline - loop.time()
                if left <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                for push in done:
                    error = push.exception()
                    if error is None:
                        acks += 1
                    elif isinstance(error, StaleEpoch):
                        raise error
                    else:
                        cause = error
        finally:
            for push in pending:
                push.cancel()
            await asyncio.gather(*pushes, return_exceptions=True)
        if acks < need:
            pid = batch[0].persistence_id
            raise ReplicationTimeout(
                f"{pid}: {acks} of min_acks={need} replicas confirmed sequence numbers "
                f"{batch[0].sequence_nr}..{batch[-1].sequence_nr} within "
                f"{self._config.ack_timeout} s; the result is unknown"
            ) from cause

    async def catch_up(self, persistence_id: str, epoch: int) -> int:
        """Bring every store up to ``local``'s entries of ``persistence_id`` (a new or lagging
        replica gets what it misses), as the primary at ``epoch``; waits for all stores.

        Returns:
            How many stores hold every entry within ``config.ack_timeout`` seconds (all of
            them when ``local`` holds none); the others are left for later writes.

        Raises:
            StaleEpoch: a store holds a newer epoch: this primary has been replaced.
        """
        highest = await self._local.highest_sequence_nr(persistence_id)
        last = [e async for e in self._local.replay(persistence_id, highest, highest, limit=1)]
        if not last or not self._replicas:
            return len(self._replicas)
        deadline = asyncio.get_running_loop().time() + self._config.ack_timeout
        pushes = [self._push(s, (last[0],), deadline, epoch) for s in self._replicas]
        results = await asyncio.gather(*pushes, return_exceptions=True)
        for result in results:
            if isinstance(result, StaleEpoch | asyncio.CancelledError):
                raise result
        return sum(1 for result in results if result is None)

    async def _push(
        self, store: ActorRef[Any], entries: tuple[JournalEntry, ...], deadline: float, epoch: int
    ) -> None:
        """Push ``entries`` to one store as the primary at ``epoch``, catching it up first when
        it is behind."""
        loop = asyncio.get_running_loop()
        pid, last = entries[0].persistence_id, entries[-1].sequence_nr
        sending = entries
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AskTimeout(f"replica store {store} did not confirm {pid} in time")
            request = Replicate(sending, None, next(_batches), self._shard, epoch)
            reply = await self._system.ask(store, request.with_reply_to, timeout=left)
            if isinstance(reply, ReplicaFenced):
                raise StaleEpoch(
                    f"{pid}: replica store {store} holds epoch {reply.epoch}, newer than "
                    f"this primary's {epoch}; it has been replaced"
                )
            if isinstance(reply, Replicated) and reply.highest >= last:
                return
            if not isinstance(reply, Replicated | ReplicaBehind):
                raise ReplicationError(f"replica store {store} cannot take {pid}: {reply!r}")
            sending = await self._catch_up(pid, reply.highest + 1, last)

    async def _catch_up(self, pid: str, start: int, last: int) -> tuple[JournalEntry, ...]:
        chunk = [e async for e in self._local.replay(pid, start, last, limit=_CATCH_UP)]
        if not chunk:
            raise ReplicationError(f"{pid}: the local journal no longer holds {start}..{last}")
        return tuple(chunk)

    async def aclose(self) -> None:
        """Nothing to release: ``local`` belongs to the caller, who closes it."""
