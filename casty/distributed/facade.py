"""`Distributed`: the coordination facade of a member (``system.distributed()``) or of a
`ClusterClient` (``client.distributed()``); the same handles serve both (see ``channel.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from casty.abc import Journal
from casty.actors.ref import ActorRef
from casty.distributed.barrier import await_barrier, barrier_entity
from casty.distributed.channel import Channel
from casty.distributed.data import (
    COUNTER,
    MAP,
    SET,
    DistributedCounter,
    DistributedMap,
    DistributedSet,
    data_entity,
)
from casty.distributed.lease import check_seconds, lease_entity
from casty.distributed.lock import DistributedLock
from casty.distributed.queue import DistributedQueue, queue_kind
from casty.distributed.semaphore import DistributedSemaphore
from casty.errors import ConfigurationError
from casty.replication.config import ReplicationConfig
from casty.sharding.behavior import sharded

if TYPE_CHECKING:
    from casty.client.client import ClusterClient
    from casty.cluster.system import ClusteredActorSystem

__all__ = [
    "BARRIER_TYPE",
    "COUNTER_TYPE",
    "LOCK_TYPE",
    "MAP_TYPE",
    "NUM_SHARDS",
    "QUEUE_TYPE",
    "SEMAPHORE_TYPE",
    "SET_TYPE",
    "Distributed",
]

#: The sharded type names of the coordination entities (system actors ``/system/<name>``).
BARRIER_TYPE = "casty-barrier"
LOCK_TYPE = "casty-lock"
SEMAPHORE_TYPE = "casty-semaphore"
COUNTER_TYPE = "casty-counter"
MAP_TYPE = "casty-map"
SET_TYPE = "casty-set"
QUEUE_TYPE = "casty-queue"
#: The types whose state a journal keeps (the others hold leases and rounds in memory).
DATA_TYPES = (COUNTER_TYPE, MAP_TYPE, SET_TYPE, QUEUE_TYPE)
ALL_TYPES = (LOCK_TYPE, SEMAPHORE_TYPE, BARRIER_TYPE, *DATA_TYPES)
#: Shard count of every type, identical on every node.
NUM_SHARDS = 64


class Distributed:
    """Locks, semaphores, barriers, counters, maps, sets and queues backed by sharded entities
    of this cluster (no external service).

    Obtained with ``system.distributed()`` on a member (one per system) or
    ``client.distributed()`` on a `ClusterClient`; the handles behave the same from both.
    Created on a member, it spawns the regions of the internal sharded types ``"casty-lock"``,
    ``"casty-semaphore"``, ``"casty-barrier"``, ``"casty-counter"``, ``"casty-map"``,
    ``"casty-set"`` and ``"casty-queue"`` (system actors, no idle passivation: an entity keeps
    a lease, a round or a structure in memory). A client spawns nothing: it routes to the
    members' regions.

    **Lazy spawning.** A sharded type's coordinator runs on the oldest member, started by that
    member's region; a member that never called ``distributed()`` hosts no entity, and while the
    oldest member has not called it, requests wait in the regions' buffers (up to the caller's
    timeout). Call ``system.distributed()`` once on every member at start (it is cheap and
    idempotent) when the coordination types are in use; ``system.barrier`` does it for you.

    **Persistence.** With ``journal``, the data structures (counter, map, set, queue) are
    event-sourced entities over it: an operation is answered once its events are stored. With
    ``replication`` as well (a `ReplicationConfig`, as for ``Behaviors.sharded``), they are
    also on ``min_acks`` replicas on other nodes before the answer, and a lost node's
    structures are served by a promoted replica with every acknowledged operation. Give every
    member its own journal (or one shared database) and the same options. Locks, semaphores
    and barriers stay in memory (see ``docs/distributed.md``).

    Args:
        source: the started member, or the open `ClusterClient`, this facade works from.
        lock_ttl: the default lease duration of `lock` and `semaphore`, in seconds.
        journal: the node's journal for the data structures (members only).
        replication: replicate the data structures' events (members only; needs ``journal``).
        timeout: the default seconds a data-structure operation waits for its answer.
        roles: roles a member must have to host coordination entities (members only; give
            every member the same value): a member without them routes only, like a client.

    Raises:
        ConfigurationError: a bad option, ``replication`` without ``journal``, or a journal or
            replication given to a client.
    """

    def __init__(
        self,
        source: ClusteredActorSystem | ClusterClient,
        *,
        lock_ttl: float = 10.0,
        journal: Journal | None = None,
        replication: ReplicationConfig | None = None,
        timeout: float = 10.0,
        roles: Iterable[str] = (),
    ) -> None:
        from casty.client.client import ClientShardRef, ClusterClient

        self._lock_ttl = check_seconds("lock_ttl", lock_ttl)
        self._timeout = check_seconds("timeout", timeout)
        self.journal = journal
        self.replication = replication
        if replication is not None and journal is None:
            raise ConfigurationError("replication= needs the node's journal= as well")
        refs: dict[str, ActorRef[Any]] = {}
        if isinstance(source, ClusterClient):
            if journal is not None or replication is not None or roles:
                raise ConfigurationError("a client's facade hosts nothing: no journal or roles")
            for type_name in ALL_TYPES:
                refs[type_name] = ClientShardRef(source, type_name, NUM_SHARDS, namespace="system")
            client = source

            async def client_ask(ref: ActorRef[Any], factory: Any, timeout: float) -> Any:
                return await client.ask(ref, factory, timeout=timeout)

            self._channel = Channel(str(client.system.node_address), refs, client_ask)
            return
        system = source
        for type_name in ALL_TYPES:
            entity: Any
            if type_name in (LOCK_TYPE, SEMAPHORE_TYPE):
                entity = lease_entity
            elif type_name == BARRIER_TYPE:
                entity = barrier_entity
            else:
                kind = {COUNTER_TYPE: COUNTER, MAP_TYPE: MAP, SET_TYPE: SET}.get(
                    type_name, queue_kind(system.clock.monotonic)
                )
                entity = data_entity(kind, type_name, journal)
            durable = type_name in DATA_TYPES and replication is not None
            behavior = sharded(
                entity,
                num_shards=NUM_SHARDS,
                roles=roles,
                passivate_after=None,
                replication=replication if durable else None,
                journal=journal if durable else None,
            )
            refs[type_name] = system.system_actor_of(behavior, type_name)

        async def ask(ref: ActorRef[Any], factory: Any, timeout: float) -> Any:
            return await system.ask(ref, factory, timeout=timeout)

        self._channel = Channel(str(system.self_node), refs, ask)

    def lock(
        self, name: str, *, ttl: float | None = None, auto_renew: bool = True
    ) -> DistributedLock:
        """A handle on the cluster-wide lock ``name`` (see `DistributedLock`).

        Args:
            name: the lock's name (non-empty).
            ttl: the lease duration in seconds (default: this facade's ``lock_ttl``, 10 s).
            auto_renew: renew the lease in the background while held.

        Raises:
            ConfigurationError: a bad name or ttl.
        """
        return DistributedLock(
            self._channel,
            LOCK_TYPE,
            name,
            ttl=self._lock_ttl if ttl is None else ttl,
            auto_renew=auto_renew,
        )

    def semaphore(
        self, name: str, permits: int, *, ttl: float | None = None, auto_renew: bool = True
    ) -> DistributedSemaphore:
        """A handle on the cluster-wide semaphore ``name`` of ``permits`` leased permits.

        Each permit has the lock's lease semantics (ttl, renewal, fencing token); see
        `DistributedSemaphore`.

        Raises:
            ConfigurationError: a bad name, permit count or ttl.
        """
        return DistributedSemaphore(
            self._channel,
            SEMAPHORE_TYPE,
            name,
            permits,
            ttl=self._lock_ttl if ttl is None else ttl,
            auto_renew=auto_renew,
        )

    async def barrier(self, name: str, parties: int, *, timeout: float = 60.0) -> int:
        """Wait at barrier ``name`` until ``parties`` participants arrived; see `await_barrier`.

        All participants are released together; the name can be used again for the next round.

        Returns:
            The round's generation number.

        Raises:
            ConfigurationError: a bad argument, or ``parties`` differs from the waiting round's.
            BarrierBroken: the timeout passed or a waiting participant's node was downed or
                removed (every waiter of the round gets it).
        """
        return await await_barrier(self._channel, BARRIER_TYPE, name, parties, timeout)

    def counter(self, name: str, *, timeout: float | None = None) -> DistributedCounter:
        """A handle on the cluster-wide counter ``name`` (see `DistributedCounter`).

        Raises:
            ConfigurationError: a bad name or timeout.
        """
        return DistributedCounter(self._channel, COUNTER_TYPE, name, timeout=self._op(timeout))

    def map(self, name: str, *, timeout: float | None = None) -> DistributedMap:
        """A handle on the cluster-wide map ``name`` (see `DistributedMap`).

        Raises:
            ConfigurationError: a bad name or timeout.
        """
        return DistributedMap(self._channel, MAP_TYPE, name, timeout=self._op(timeout))

    def set(self, name: str, *, timeout: float | None = None) -> DistributedSet:
        """A handle on the cluster-wide set ``name`` (see `DistributedSet`).

        Raises:
            ConfigurationError: a bad name or timeout.
        """
        return DistributedSet(self._channel, SET_TYPE, name, timeout=self._op(timeout))

    def queue(self, name: str, *, timeout: float | None = None) -> DistributedQueue:
        """A handle on the cluster-wide work queue ``name`` (see `DistributedQueue`).

        Raises:
            ConfigurationError: a bad name or timeout.
        """
        return DistributedQueue(self._channel, QUEUE_TYPE, name, timeout=self._op(timeout))

    def _op(self, timeout: float | None) -> float:
        return self._timeout if timeout is None else timeout
