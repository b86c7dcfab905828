"""`Cluster`: read access to this node's view of the cluster, waiting on it, and leaving it.

``system.cluster`` of a `ClusteredActorSystem` is one of these. The topology actor is the only
writer: it replaces the view after every change, on the event loop, so reads never see a
half-applied change and need no lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, final

from casty.abc import Address
from casty.actors.ref import ActorRef
from casty.cluster.config import ClusterConfig
from casty.cluster.events import ClusterDomainEvent, TopologySnapshot, topology_snapshot
from casty.cluster.gossip import Gossip
from casty.cluster.member import Member, MemberStatus, UniqueAddress
from casty.cluster.protocol import (
    LeaveCluster,
    SubscribeClusterEvents,
    SubscribeTopology,
    UnsubscribeTopology,
)
from casty.errors import ClusterError, ConfigurationError, NodeDowned

__all__ = ["Cluster", "ClusterStatistics", "ExitHook"]

log = logging.getLogger("casty.cluster")

#: A coroutine function run when this node is exiting the cluster (see `Cluster.add_exit_hook`).
ExitHook = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ClusterStatistics:
    """A snapshot of this node's cluster activity since it started.

    Attributes:
        members: members in this node's state (any status).
        up: members that are ``up``.
        unreachable: members some observer records as unreachable.
        gossip_sent: full gossip states sent (welcomes included).
        status_sent: gossip status digests sent.
        gossip_received: full gossip states received.
        status_received: gossip status digests received.
        heartbeats_sent: heartbeat requests sent.
        dropped: malformed messages dropped (each is logged, at a calm rate).
        downing_decisions: split brain resolver decisions this node carried out.
    """

    members: int
    up: int
    unreachable: int
    gossip_sent: int
    status_sent: int
    gossip_received: int
    status_received: int
    heartbeats_sent: int
    dropped: int
    downing_decisions: int


class Counters:
    """The mutable counters behind `ClusterStatistics` (written by the topology actor)."""

    __slots__ = (
        "downing_decisions",
        "dropped",
        "gossip_received",
        "gossip_sent",
        "heartbeats_sent",
        "status_received",
        "status_sent",
    )

    def __init__(self) -> None:
        self.gossip_sent = 0
        self.status_sent = 0
        self.gossip_received = 0
        self.status_received = 0
        self.heartbeats_sent = 0
        self.dropped = 0
        self.downing_decisions = 0


@final
class Cluster:
    """This node's view of the cluster (``system.cluster``).

    The properties read the topology actor's latest state; `wait_until` waits for a condition
    on it. Obtain it from a started `ClusteredActorSystem`; never build one directly.

    Args:
        self_node: this node's address and incarnation.
        config: the cluster settings.
    """

    __slots__ = (
        "_changed",
        "_config",
        "_downed",
        "_exit_hooks",
        "_failure",
        "_removed",
        "_self_node",
        "_snapshot",
        "_state",
        "_topology",
        "counters",
    )

    def __init__(self, self_node: UniqueAddress, config: ClusterConfig) -> None:
        self._self_node = self_node
        self._config = config
        self._state = Gossip()
        self._snapshot = topology_snapshot(self._state, self_node)
        self._changed = asyncio.Event()
        self._exit_hooks: list[ExitHook] = []
        self._failure: ClusterError | None = None
        self._downed = False
        self._removed = False
        self._topology: ActorRef[Any] | None = None
        self.counters = Counters()

    # -- reading -----------------------------------------------------------------------------

    @property
    def self_node(self) -> UniqueAddress:
        """This node's address and incarnation."""
        return self._self_node

    @property
    def self_address(self) -> Address:
        """This node's network address."""
        return self._self_node.address

    @property
    def self_member(self) -> Member | None:
        """This node as a member; ``None`` before it is admitted and after it is removed."""
        if self._removed or self._downed:
            return None
        return self._state.member(self._self_node)

    @property
    def self_status(self) -> MemberStatus | None:
        """This node's status: ``None`` before it is admitted, ``down`` once it was downed
        (it no longer serves), ``removed`` once it left the cluster."""
        if self._downed:
            return MemberStatus.DOWN
        if self._removed:
            return MemberStatus.REMOVED
        member = self._state.member(self._self_node)
        return member.status if member is not None else None

    @property
    def is_up(self) -> bool:
        """Whether this node is an ``up`` member."""
        return self.self_status is MemberStatus.UP

    @property
    def is_downed(self) -> bool:
        """Whether this node was downed (by its split brain resolver or by the cluster) and
        stopped serving; final."""
        return self._downed

    @property
    def is_removed(self) -> bool:
        """Whether this node left the cluster (removed after a leave, or downed); final."""
        return self._removed or self._downed

    def raise_if_downed(self) -> None:
        """Raise `NodeDowned` when this node was downed (for layers that must stop serving)."""
        if self._downed:
            raise NodeDowned(f"node {self._self_node} was downed and no longer serves")

    @property
    def members(self) -> tuple[Member, ...]:
        """Every member in this node's state, sorted by unique address (any status)."""
        return self._state.members

    @property
    def up_members(self) -> tuple[Member, ...]:
        """The members whose status is ``up``, sorted by unique address."""
        return tuple(m for m in self._state.members if m.status is MemberStatus.UP)

    @property
    def unreachable(self) -> tuple[Member, ...]:
        """Members some (non-downed) observer records as unreachable, sorted."""
        return self._state.unreachable_members()

    @property
    def leader(self) -> Address | None:
        """The leader's address as this node sees it, or ``None``."""
        return self._snapshot.leader

    @property
    def snapshot(self) -> TopologySnapshot:
        """The latest `TopologySnapshot` (what topology subscribers were last sent)."""
        return self._snapshot

    @property
    def state(self) -> Gossip:
        """The full gossip state this node holds (members, reachability, versions)."""
        return self._state

    @property
    def topology_actor(self) -> ActorRef[Any]:
        """The topology actor (``/system/cluster``): tell it `SubscribeTopology`.

        Raises:
            ClusterError: the system has not started yet.
        """
        if self._topology is None:
            raise ClusterError("the topology actor starts with the system")
        return self._topology

    def statistics(self) -> ClusterStatistics:
        """Counters of this node's cluster activity."""
        c = self.counters
        return ClusterStatistics(
            members=len(self._state.members),
            up=len(self.up_members),
            unreachable=len(self._snapshot.unreachable),
            gossip_sent=c.gossip_sent,
            status_sent=c.status_sent,
            gossip_received=c.gossip_received,
            status_received=c.status_received,
            heartbeats_sent=c.heartbeats_sent,
            dropped=c.dropped,
            downing_decisions=c.downing_decisions,
        )

    # -- acting ------------------------------------------------------------------------------

    def subscribe(
        self,
        subscriber: ActorRef[Any],
        *event_types: type[ClusterDomainEvent],
        initial_state_as_events: bool = False,
    ) -> None:
        """Subscribe ``subscriber`` to topology snapshots, or to membership events.

        Without ``event_types``: send ``subscriber`` the current `TopologySnapshot` now and a
        new one on every change (the same as telling the topology actor
        `SubscribeTopology(subscriber)`; end it with `unsubscribe`).

        With ``event_types`` (such as ``MemberUp``, or a base such as `MemberEvent`): subscribe
        ``subscriber`` to them on the event stream. A plain event-stream subscription sees only
        the changes after it; with ``initial_state_as_events=True`` the subscriber first gets
        the events that describe the current state (as Akka's ``InitialStateAsEvents``): a
        `MemberUp` for each member that is up, a `MemberJoined`, `MemberLeft`, ... for members
        in other statuses, an `UnreachableMember` for each unreachable member and a
        `LeaderChanged` for the current leader, each filtered by ``event_types``; then every
        later change, each exactly once. The topology actor makes the subscription and sends
        the current state in one step, so nothing falls between the two. Subscribing again
        sends the current state again. The subscription ends when the subscriber stops, or with
        ``system.event_stream.tell(EventStreamUnsubscribe(event_type, subscriber))``.

        Raises:
            ConfigurationError: an event type is not a `ClusterDomainEvent` class, or
                ``initial_state_as_events`` without event types.
            ClusterError: the system has not started yet.
        """
        if not event_types:
            if initial_state_as_events:
                raise ConfigurationError(
                    "initial_state_as_events needs event types, such as subscribe(ref, MemberUp, "
                    "initial_state_as_events=True); a topology subscriber always gets the "
                    "current snapshot first"
                )
            self.topology_actor.tell(SubscribeTopology(subscriber))
            return
        for kind in event_types:
            if not isinstance(kind, type) or not issubclass(kind, ClusterDomainEvent):
                raise ConfigurationError(
                    f"event types must be cluster event classes (such as MemberUp), got {kind!r}"
                )
        message = SubscribeClusterEvents(subscriber, event_types, initial_state_as_events)
        self.topology_actor.tell(message)

    def unsubscribe(self, subscriber: ActorRef[TopologySnapshot]) -> None:
        """Stop sending snapshots to ``subscriber``; idempotent."""
        self.topology_actor.tell(UnsubscribeTopology(subscriber))

    def add_exit_hook(self, hook: ExitHook) -> None:
        """Run ``await hook()`` when this node is exiting the cluster.

        A graceful leave moves this node ``leaving → exiting``; once it is ``exiting`` the rest
        of the cluster knows it goes (nothing new is placed on it), and it stays connected, and
        is not removed, until every hook has returned. Hooks run one after another in the order
        they were added (a later layer such as sharding hands its work to other nodes here);
        together they are bounded by ``leave_timeout``; an exception is logged and the next
        hook runs. Hooks do not run when this node is downed or crashes.
        """
        self._exit_hooks.append(hook)

    def remove_exit_hook(self, hook: ExitHook) -> None:
        """Undo `add_exit_hook`; harmless when ``hook`` is not registered."""
        if hook in self._exit_hooks:
            self._exit_hooks.remove(hook)

    async def leave(self, timeout: float | None = None) -> bool:
        """Leave the cluster gracefully and wait until this node is removed.

        The node moves ``leaving → exiting`` (exit hooks run) ``→ removed``, each move made by
        the leader at convergence; the other nodes see `MemberLeft`, then `MemberExited`, then
        `MemberRemoved`. The actor system keeps running locally afterwards. Idempotent: calling
        it again (or concurrently) waits for the same removal.

        Args:
            timeout: seconds to wait (default ``ClusterConfig.leave_timeout``).

        Returns:
            ``True`` once this node was removed; ``False`` when it was downed instead, or the
            removal did not complete in time (the node should stop; the cluster then downs it
            by failure detection).

        Cancellation stops the wait; the leave itself goes on.
        """
        if self.is_removed:
            return not self._downed
        self.topology_actor.tell(LeaveCluster())
        limit = self._config.leave_timeout if timeout is None else timeout
        try:
            await self.wait_until(lambda c: c.is_removed, limit)
        except TimeoutError:
            log.warning(
                "node %s: leaving the cluster did not complete within %.1f s",
                self._self_node,
                limit,
            )
            return False
        return not self._downed

    async def wait_until(
        self, predicate: Callable[[Cluster], bool], timeout: float | None = None
    ) -> None:
        """Wait until ``predicate(cluster)`` is true, re-checking after every change.

        Example: ``await system.cluster.wait_until(lambda c: len(c.up_members) >= 3, 10.0)``.

        Args:
            predicate: a function of this object; it must not block.
            timeout: seconds, ``None`` for no limit.

        Raises:
            TimeoutError: still false after ``timeout`` seconds.
            JoinRefused: this node was refused by the cluster (the predicate is false).
        """
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self._failure is not None:
                    raise self._failure
                await self._changed.wait()

    # -- written by the topology actor -------------------------------------------------------

    def _attach(self, topology: ActorRef[Any]) -> None:
        self._topology = topology

    def _update(self, state: Gossip, snapshot: TopologySnapshot) -> None:
        self._state = state
        self._snapshot = snapshot
        self._notify()

    def _stopped(self, *, downed: bool) -> None:
        if downed:
            self._downed = True
        else:
            self._removed = True
        self._notify()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _fail(self, error: ClusterError) -> None:
        # Refused before it was admitted: the node is out of the cluster for good.
        self._failure = error
        self._removed = True
        self._notify()

    @property
    def _exit_hook_list(self) -> tuple[ExitHook, ...]:
        return tuple(self._exit_hooks)

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def __repr__(self) -> str:
        status = self.self_status.value if self.self_status is not None else "not admitted"
        return f"<Cluster {self._self_node} {status}, {len(self._state.members)} members>"
