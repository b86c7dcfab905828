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
from casty.replication._pushes import Channel, channel
from casty.replication._pushes import retrieve as _retrieve
from casty.replication._reads import LocalReads
from casty.replication.config import ReplicationConfig
from casty.replication.protocol import (
    CATCH_UP_LIMIT,
    ReplicaBehind,
    ReplicaFenced,
    Replicate,
    Replicated,
)

if TYPE_CHECKING:
    from casty.actors.ref import ActorRef
    from casty.actors.system import ActorSystem

__all__ = ["ReplicatedJournal"]

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
    up. Every other method reads ``local`` only. The node's pushes to one store made in the
    same event-loop turn (by any journal) travel in one message (`ReplicateBatch`).

    Errors of ``write`` (the command's ``on_failure`` gets them as the ``__cause__`` of its
    `PersistFailed`):

    - `ReplicationTimeout`: fewer than ``min_acks`` stores confirmed within
      ``config.ack_timeout`` seconds (sooner when the others answered that they cannot: a
      failing journal, another history; the ``__cause__`` says why). The entries are in
      ``local`` and maybe on some replicas, so the command's result is *unknown*, never a
      success; the entity then fails (its supervisor decides) and a restarted one replays
      what ``local`` holds.
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
        self._channels: tuple[Channel, ...] = ()  # to ``replicas``, from the first write

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
        deadline = asyncio.get_running_loop().time() + self._config.ack_timeout
        # Each push is a future of the node's batched pushes to its store (no task of its own),
        # answered (or failed) by the deadline.
        channels = self._channels
        if not channels:
            timeout = self._config.ack_timeout
            channels = self._channels = tuple(
                channel(self._system, s, timeout) for s in self._replicas
            )
        request = Replicate(batch, None, 0, self._shard, epoch)  # answered by position
        pushes = [
            (store, ch.send(request, deadline))
            for store, ch in zip(self._replicas, channels, strict=True)
        ]
        if need == len(pushes):
            acks, cause = await self._every(pushes, batch, deadline, epoch)
        else:
            acks, cause = await self._first(need, pushes, batch, deadline, epoch)
        if acks < need:
            pid = batch[0].persistence_id
            raise ReplicationTimeout(
                f"{pid}: {acks} of min_acks={need} replicas confirmed sequence numbers "
                f"{batch[0].sequence_nr}..{batch[-1].sequence_nr} within "
                f"{self._config.ack_timeout} s; the result is unknown"
            ) from cause

    async def _every(
        self,
        pushes: list[tuple[ActorRef[Any], asyncio.Future[Any]]],
        batch: tuple[JournalEntry, ...],
        deadline: float,
        epoch: int,
    ) -> tuple[int, BaseException | None]:
        """Wait until every store confirmed (catching up those behind), or one cannot.

        Returns:
            The stores that confirmed, and why the first one that did not failed.
        """
        acks = 0
        try:
            last = batch[-1].sequence_nr
            for store, push in pushes:
                reply = await push
                if not (type(reply) is int and reply >= last):  # the usual answer: stored
                    await self._follow(store, reply, batch, deadline, epoch)
                acks += 1
        except StaleEpoch:
            raise
        except Exception as error:
            return acks, error
        finally:
            for _, push in pushes[acks:]:
                push.add_done_callback(_retrieve)
        return acks, None

    async def _first(
        self,
        need: int,
        pushes: list[tuple[ActorRef[Any], asyncio.Future[Any]]],
        batch: tuple[JournalEntry, ...],
        deadline: float,
        epoch: int,
    ) -> tuple[int, BaseException | None]:
        """Wait until ``need`` stores confirmed (catching up those behind), or cannot.

        Returns:
            The stores that confirmed, and why the last one that did not failed.
        """
        loop = asyncio.get_running_loop()
        pending: dict[asyncio.Future[Any], ActorRef[Any]] = {push: s for s, push in pushes}
        followers: set[asyncio.Future[Any]] = set()
        acks = 0
        cause: BaseException | None = None
        try:
            while acks < need and len(pending) >= need - acks:
                left = deadline - loop.time()
                if left <= 0:
                    break
                done, _ = await asyncio.wait(
                    pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                for push in done:
                    store = pending.pop(push)
                    try:
                        reply = push.result()  # a follower's is None: the store confirmed
                        if push in followers or self._confirms(store, reply, batch, epoch):
                            acks += 1
                            continue
                    except StaleEpoch:
                        raise
                    except Exception as error:
                        cause = error
                        continue
                    follower = asyncio.ensure_future(
                        self._follow(store, reply, batch, deadline, epoch)
                    )
                    followers.add(follower)
                    pending[follower] = store
        finally:
            # Stores not waited for still get the push (already sent, or leaving with the
            # node's next batch); their catch-ups stop here, and later writes resume them.
            for push in pending:
                push.add_done_callback(_retrieve)
            for task in followers:
                task.cancel()
            if followers:
                await asyncio.wait(followers)
        return acks, cause

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

    def _send(
        self, store: ActorRef[Any], entries: tuple[JournalEntry, ...], deadline: float, epoch: int
    ) -> asyncio.Future[Any]:
        request = Replicate(entries, None, 0, self._shard, epoch)  # answered by position
        return channel(self._system, store, self._config.ack_timeout).send(request, deadline)

    def _confirms(
        self, store: ActorRef[Any], reply: object, entries: tuple[JournalEntry, ...], epoch: int
    ) -> bool:
        """Whether ``reply`` confirms ``entries``; False: the store must be caught up first.

        Raises:
            StaleEpoch: the store holds a newer epoch of the id.
            ReplicationError: the store cannot take the entries (another history).
        """
        highest = _highest(reply)
        if highest is not None and highest >= entries[-1].sequence_nr:
            return True
        if highest is not None:
            return False
        pid = entries[0].persistence_id
        if isinstance(reply, ReplicaFenced):
            # reply.epoch is the shard's fence or the id's newest entry's epoch: the journal's
            # own fence may be newer still, so it can even equal ours.
            raise StaleEpoch(
                f"{pid}: replica store {store} is fenced above this primary's epoch {epoch} "
                f"(it reports epoch {reply.epoch}); this primary has been replaced"
            )
        raise ReplicationError(f"replica store {store} cannot take {pid}: {reply!r}")

    async def _push(
        self, store: ActorRef[Any], entries: tuple[JournalEntry, ...], deadline: float, epoch: int
    ) -> None:
        """Push ``entries`` to one store as the primary at ``epoch``, catching it up first when
        it is behind."""
        reply = await self._ask(store, entries, deadline, epoch, entries)
        await self._follow(store, reply, entries, deadline, epoch)

    async def _follow(
        self,
        store: ActorRef[Any],
        reply: object,
        entries: tuple[JournalEntry, ...],
        deadline: float,
        epoch: int,
    ) -> None:
        """Go on from the store's ``reply`` to a push of ``entries`` until it confirms them:
        send what it misses from the local journal (from its highest + 1)."""
        pid, last = entries[0].persistence_id, entries[-1].sequence_nr
        while not self._confirms(store, reply, entries, epoch):
            behind = _highest(reply)
            assert behind is not None  # `_confirms` raises for any other answer
            sending = await self._catch_up(pid, behind + 1, last)
            reply = await self._ask(store, sending, deadline, epoch, entries)

    async def _ask(
        self,
        store: ActorRef[Any],
        sending: tuple[JournalEntry, ...],
        deadline: float,
        epoch: int,
        entries: tuple[JournalEntry, ...],
    ) -> object:
        """The store's answer to a push of ``sending`` (part of the write of ``entries``)."""
        left = deadline - asyncio.get_running_loop().time()
        if left > 0:
            answer = self._send(store, sending, deadline, epoch)
            done, _ = await asyncio.wait([answer], timeout=left)
            if done:
                return answer.result()
            answer.cancel()
        pid = entries[0].persistence_id
        raise AskTimeout(f"replica store {store} did not confirm {pid} in time")

    async def _catch_up(self, pid: str, start: int, last: int) -> tuple[JournalEntry, ...]:
        chunk = [e async for e in self._local.replay(pid, start, last, limit=CATCH_UP_LIMIT)]
        if not chunk or chunk[0].sequence_nr != start:
            # Deleted after a snapshot (`delete_to`): snapshots are not replicated, so a store
            # that needs these entries cannot be caught up from here.
            raise ReplicationError(
                f"{pid}: the local journal no longer holds {start}..{last} (deleted); the "
                "store cannot be caught up"
            )
        return tuple(chunk)

    async def aclose(self) -> None:
        """Nothing to release: ``local`` belongs to the caller, who closes it."""


def _highest(reply: object) -> int | None:
    """The store's highest number of the id in a `Replicated` or `ReplicaBehind` answer (an int
    answer is a `Replicated`'s, see `ReplicatedBatch`); None for any other answer."""
    if type(reply) is int:
        return reply
    if isinstance(reply, Replicated | ReplicaBehind):
        return reply.highest
    return None
