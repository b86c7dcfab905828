"""The shard region: the actor `Behaviors.sharded` spawns on every node.

A region routes `ShardEnvelope` messages, hosts the shards the coordinator gives it (their
entities are its children), buffers messages whose shard has no known home, takes part in
handoffs, passivates idle entities, starts the coordinator when its node is the oldest, and
hands its shards off when its node leaves.

The hot path is one dict lookup: a message for an entity that runs here goes straight to the
entity's mailbox. Otherwise the shard id (cached per entity id) picks the home: a local shard
starts the entity, a remote home gets the envelope (one remote message, the reply goes straight
back to the sender's ``reply_to``), and an unknown home buffers the message and asks the
coordinator. No per-message task, no per-message allocation beyond the mailbox entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, final

from casty.abc import Address
from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.actors.events import EventStreamSubscribe
from casty.actors.ref import ActorRef
from casty.actors.signals import PostStop, PreRestart, Signal
from casty.actors.supervision import SupervisorStrategy
from casty.actors.timers import TimerScheduler
from casty.cluster.events import MemberRemoved, TopologySnapshot
from casty.cluster.protocol import SetShardAllocations
from casty.errors import ConfigurationError, InvalidActorName, ShardUnavailable
from casty.remote.address import ActorAddress
from casty.replication.ledger import ShardLedger
from casty.replication.replica import replica_store
from casty.replication.sharded import (
    REPLICA_STORE_NAME,
    ShardReplicas,
    binding_shard,
    sync_shard,
)
from casty.sharding.control import (
    CoordinatorHandover,
    CoordinatorStateCopy,
    EntityStarted,
    EntityStopped,
    HandoffAckRelay,
    RememberedEntities,
    ShardRegionRefused,
    ShardsHandedOff,
)
from casty.sharding.entities import (
    ACTIVE,
    FENCED,
    HANDOFF,
    PASSIVATE,
    EntityRecord,
    child_name,
    is_idle,
)
from casty.sharding.hashing import shard_id_for
from casty.sharding.messages import (
    BeginHandoff,
    BeginHandoffAck,
    GetShardHome,
    GetShardRegionState,
    GracefulShutdownRequest,
    Handoff,
    HostedShard,
    HostShard,
    Passivate,
    RefLike,
    RegionStopped,
    RegisterAck,
    RegisterProxy,
    RegisterRefused,
    RegisterRegion,
    ShardEnvelope,
    ShardHome,
    ShardRegionState,
    ShardStarted,
    ShardState,
    ShardStopped,
    StartEntity,
)
from casty.sharding.settings import TypeSpec
from casty.sharding.view import ClusterView, coordinator_name, node_of

if TYPE_CHECKING:
    from casty.cluster.system import ClusteredActorSystem

__all__ = ["is_region", "region_behavior"]

log = logging.getLogger("casty.sharding")

_SAME: Final = Behaviors.same()
_SHARD_CACHE_SIZE: Final = 1 << 17  # entity id -> shard id entries kept before a reset
_PASSIVATION_TICKS: Final = 4  # an entity idle for this many ticks is passivated
_DRAIN_POLL: Final = (0.001, 0.002, 0.005, 0.01)  # seconds between idleness checks
_REPORT_TICKS: Final = 10  # a registered region re-registers every this many retry ticks


# -- the region's own messages (never leave the node) -------------------------------------------


@final
class _Tick:
    __slots__ = ()


@final
class _PassivationTick:
    __slots__ = ()


@final
class _DrainCheck:
    __slots__ = ()


@final
class _HandoffDeadline:
    __slots__ = ("shard_id",)

    def __init__(self, shard_id: int) -> None:
        self.shard_id = shard_id


@final
class _EntityTerminated:
    __slots__ = ("record",)

    def __init__(self, record: EntityRecord) -> None:
        self.record = record


@final
class _LeaveRequest:
    """From the exit hook: hand every shard off, then resolve ``done``."""

    __slots__ = ("done",)

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done


@final
class _Synced:
    """A `sync_shard` of ``shard_id`` at ``epoch`` ended: ``confirmed`` ids, or ``error``."""

    __slots__ = ("confirmed", "epoch", "error", "shard_id")

    def __init__(
        self, shard_id: int, epoch: int, confirmed: int | None, error: BaseException | None
    ) -> None:
        self.shard_id = shard_id
        self.epoch = epoch
        self.confirmed = confirmed
        self.error = error


@final
class _Shard:
    """A shard this region hosts."""

    __slots__ = ("entities", "epoch", "handoff_to", "replication", "shard_id")

    def __init__(self, shard_id: int, epoch: int) -> None:
        self.shard_id = shard_id
        self.epoch = epoch
        self.entities: set[str] = set()
        # With replication: the shard's epoch and replica stores, shared with its entities.
        self.replication: ShardReplicas | None = None
        # Set while the shard is handed off: where `ShardStopped` goes once it is empty.
        self.handoff_to: RefLike | None = None


_TICK = _Tick()
_PASSIVATION_TICK = _PassivationTick()
_DRAIN_CHECK = _DrainCheck()


def _region_of(cell: object) -> _Region | None:
    """The region an actor cell runs (its handler is a region's), or None."""
    handler = getattr(getattr(cell, "_behavior", None), "handler", None)
    region = getattr(handler, "__self__", None)
    return region if isinstance(region, _Region) else None


def is_region(cell: object) -> bool:
    """Whether an actor cell runs a shard region (its handler is a region's)."""
    return _region_of(cell) is not None


def region_state(cell: object) -> tuple[int, int] | None:
    """(shards hosted, live entities) of a region's actor cell; None for another actor."""
    region = _region_of(cell)
    return None if region is None else (len(region.hosted), len(region.entities))


def region_behavior(spec: TypeSpec) -> Behavior[Any]:
    """The region of a sharded type (what `casty.sharding.sharded` returns)."""

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        from casty.cluster.system import ClusteredActorSystem

        if not isinstance(ctx.system, ClusteredActorSystem):
            raise ConfigurationError(
                "Behaviors.sharded needs a ClusteredActorSystem (a cluster member); "
                f"{ctx.system!r} is not one"
            )
        system = ctx.system
        node = system.configuration
        resolved = spec.resolved(node.sharding, node.replication, system.journal)

        def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
            region = _Region(ctx, timers, resolved, system)
            region.start()
            return Behaviors.receive(region.receive, region.on_signal)

        return Behaviors.with_timers(with_timers)

    # A failing region restarts (its entities stop with it) and registers again.
    return Behaviors.supervise(
        Behaviors.setup(setup), SupervisorStrategy.restart(max_restarts=10, within=60.0)
    )


@final
class _Region:
    """The state and handlers of one region (see the module docstring)."""

    def __init__(
        self,
        ctx: ActorContext[Any],
        timers: TimerScheduler[Any],
        spec: TypeSpec,
        system: ClusteredActorSystem,
    ) -> None:
        self.ctx = ctx
        self.timers = timers
        self.spec = spec
        self.system = system
        self.me: ActorRef[Any] = ctx.self
        self.type_name = ctx.name
        self.num_shards = spec.num_shards
        self.settings = spec.settings
        self.buffer_size = spec.buffer_size
        self.remember = spec.remember_entities
        self.log_prefix = f"sharding {self.type_name!r}"
        # Routing state.
        self.entities: dict[str, EntityRecord] = {}
        self.shard_of: dict[str, int] = {}
        self.homes: list[Any] = [None] * spec.num_shards  # _Shard, a remote region ref, None
        self.epochs: list[int] = [0] * spec.num_shards  # highest epoch seen per shard
        self.hosted: dict[int, _Shard] = {}
        # With replication: what this node's journal holds per shard (kept in that journal).
        self.ledger = ShardLedger(spec.journal, self.type_name)
        self.buffers: dict[int, deque[Any]] = {}  # shard -> envelopes waiting for a home
        self.buffered = 0  # messages in `buffers` and in entity buffers together
        self.asked: dict[int, float] = {}  # shard -> when GetShardHome was last sent
        self.parked: dict[int, RefLike] = {}  # shard -> its home, on an unreachable node
        self.nodes: dict[RefLike, Address | None] = {}  # remote region ref -> its node
        self.tick = 0  # passivation ticks
        self.ticks = 0  # retry ticks
        self.draining: set[EntityRecord] = set()
        self.drain_polls = 0
        # Cluster and coordinator state.
        self.view = ClusterView()
        self.self_node = system.node_address
        self.proxy: bool | None = None  # decided once this node is a member
        self.coordinator_node: Address | None = None
        self.coordinator: ActorRef[Any] | None = None
        self.registered = False
        self.refused: str | None = None
        self.downed = False
        self.state_copy: CoordinatorStateCopy | None = None
        self.allocations: dict[int, Address] = {}  # as last told to the topology actor
        self.local_coordinator: ActorRef[Any] | None = None
        self.spawn_pending = False  # the coordinator could not be spawned yet: retry on tick
        self.predecessor: Address | None = None  # the coordinator's node before ours
        self.leaving: _LeaveRequest | None = None
        self.exit_hook: Callable[[], Any] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.system.cluster.subscribe(self.me)
        self.system.event_stream.tell(EventStreamSubscribe(MemberRemoved, self.me))
        self.timers.start_periodic_timer("tick", _TICK, self.settings.retry_interval)
        passivate_after = self.spec.passivate_after
        if passivate_after is not None:
            self.timers.start_periodic_timer(
                "passivation", _PASSIVATION_TICK, passivate_after / _PASSIVATION_TICKS
            )
        me = self.me

        async def hand_off_before_exit() -> None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            me.tell(_LeaveRequest(done))
            await done

        self.exit_hook = hand_off_before_exit
        self.system.cluster.add_exit_hook(hand_off_before_exit)
        if self.spec.journal is not None:
            # This node's replica store: primaries of other nodes push their events here.
            self.ctx.spawn(replica_store(self.spec.journal, self.ledger), REPLICA_STORE_NAME)

    def on_signal(self, ctx: ActorContext[Any], signal: Signal) -> None:
        if not isinstance(signal, PostStop | PreRestart):
            return
        if self.exit_hook is not None:
            self.system.cluster.remove_exit_hook(self.exit_hook)
        if self.leaving is not None and not self.leaving.done.done():
            self.leaving.done.set_result(None)
        stopping = isinstance(signal, PostStop)
        if stopping and self.registered and not self.downed and self.coordinator is not None:
            # Our entities are stopped with us: the coordinator may place the shards elsewhere.
            self.coordinator.tell(RegionStopped(self.me))
        self.stop_local_coordinator()
        for shard_buffer in self.buffers.values():
            for item in shard_buffer:
                self.dead_letter(item, "the shard region stopped")
        self.buffers.clear()

    # -- messages -------------------------------------------------------------------------

    def receive(self, ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if msg.__class__ is ShardEnvelope:
            try:
                record = self.entities.get(msg.entity_id)
            except TypeError:  # an unhashable id (a list, say): route dead-letters it
                record = None
            if record is not None and record.buffer is None:
                record.ref.tell(msg.message)
                record.tick = self.tick
                return _SAME
            self.route(msg)
            return _SAME
        handler = self.handlers.get(msg.__class__)
        if handler is None:
            return Behaviors.unhandled()
        handler(self, msg)
        return _SAME

    # -- routing ----------------------------------------------------------------------------

    def route(self, msg: Any) -> None:
        """Deliver an envelope (or a `StartEntity`) that missed the fast path."""
        if self.downed or self.refused is not None:
            why = "this node was downed" if self.downed else f"region refused: {self.refused}"
            self.dead_letter(msg, f"sharding {self.type_name!r} does not serve: {why}")
            return
        entity_id = msg.entity_id
        shard_id = self.shard_of.get(entity_id) if entity_id.__class__ is str else None
        if shard_id is None:
            try:
                shard_id = shard_id_for(entity_id, self.num_shards)
            except ConfigurationError as exc:
                self.dead_letter(msg, f"invalid entity id: {exc}")
                return
            if len(self.shard_of) >= _SHARD_CACHE_SIZE:
                self.shard_of.clear()
            self.shard_of[entity_id] = shard_id
        home = self.homes[shard_id]
        if home is None:
            self.hold(shard_id, msg)
        elif home.__class__ is _Shard:
            self.deliver_local(home, msg)
        else:
            home.tell(msg)

    def deliver_local(self, shard: _Shard, msg: Any) -> None:
        entity_id = msg.entity_id
        record = self.entities.get(entity_id)
        if record is not None:
            if record.buffer is None:
                if msg.__class__ is ShardEnvelope:
                    record.ref.tell(msg.message)
                    record.tick = self.tick
            elif self.buffered >= self.buffer_size:
                self.overflow(msg, shard.shard_id)
            else:
                record.buffer.append(msg)
                self.buffered += 1
            return
        record = self.start_entity(shard, entity_id)
        if record is not None and msg.__class__ is ShardEnvelope:
            record.ref.tell(msg.message)

    def start_entity(self, shard: _Shard, entity_id: str) -> EntityRecord | None:
        ctx = self.ctx
        try:
            if shard.replication is None:
                behavior = self.spec.entity_factory(entity_id)
            else:
                with binding_shard(shard.replication):
                    behavior = self.spec.entity_factory(entity_id)
            ref = ctx.spawn(behavior, child_name(entity_id))
        except Exception:
            log.exception("%s: the entity factory failed for %r", self.log_prefix, entity_id)
            return None
        record = EntityRecord(entity_id, shard.shard_id, ref, self.tick)  # type: ignore[arg-type]
        ctx.watch(ref, _EntityTerminated(record))
        self.entities[entity_id] = record
        shard.entities.add(entity_id)
        if self.remember and self.coordinator is not None:
            self.coordinator.tell(EntityStarted(shard.shard_id, entity_id))
        return record

    def hold(self, shard_id: int, msg: Any) -> None:
        """Buffer a message whose shard has no usable home, and ask where the shard lives."""
        if self.buffered >= self.buffer_size:
            self.overflow(msg, shard_id)
            return
        shard_buffer = self.buffers.get(shard_id)
        if shard_buffer is None:
            shard_buffer = self.buffers[shard_id] = deque()
        shard_buffer.append(msg)
        self.buffered += 1
        if shard_id not in self.asked and shard_id not in self.parked:
            self.ask_home(shard_id)

    def ask_home(self, shard_id: int) -> None:
        self.asked[shard_id] = self.system.clock.monotonic()
        if self.registered and self.coordinator is not None:
            self.coordinator.tell(GetShardHome(shard_id, self.me))

    def flush(self, shard_id: int) -> None:
        """Route the buffered messages of ``shard_id`` again, in order (its home is known)."""
        self.asked.pop(shard_id, None)
        shard_buffer = self.buffers.pop(shard_id, None)
        if shard_buffer is None:
            return
        self.buffered -= len(shard_buffer)
        for msg in shard_buffer:
            self.route(msg)

    def overflow(self, msg: Any, shard_id: int) -> None:
        reason = (
            f"sharding {self.type_name!r}: buffer full ({self.buffer_size} messages) while "
            f"shard {shard_id} has no reachable home"
        )
        self.dead_letter(msg, reason)

    def dead_letter(self, msg: Any, reason: str) -> None:
        # No reply can come: an ask of this node waiting for one fails now instead of at its
        # timeout (remoting tells another node's asker).
        unavailable = ShardUnavailable(f"{reason}; the request was dropped")
        self.system._dead_letter(msg, self.me, reason, unavailable)

    def on_start_entity(self, msg: StartEntity) -> None:
        record = self.entities.get(msg.entity_id) if msg.entity_id.__class__ is str else None
        if record is None or record.buffer is not None:
            self.route(msg)

    # -- topology ---------------------------------------------------------------------------

    def on_topology(self, snapshot: TopologySnapshot) -> None:
        old = self.view
        view = self.view = ClusterView(snapshot)
        me = view.members.get(self.self_node)
        if self.system.cluster.is_downed:
            self.go_down()
            return
        if me is not None and self.proxy is None:
            self.proxy = not self.spec.roles <= me.roles
        # Homes on nodes that became unreachable are parked (buffer instead of sending into a
        # void); parked homes come back when their node does; homes on removed nodes are gone.
        for shard_id, home in enumerate(self.homes):
            if home is not None and home.__class__ is not _Shard:
                node = self.node_of(home)
                if not view.is_available(node):
                    self.homes[shard_id] = None
                    if view.status(node) is not None:
                        self.parked[shard_id] = home
        for shard_id, home in list(self.parked.items()):
            node = self.node_of(home)
            if view.is_available(node):
                del self.parked[shard_id]
                self.homes[shard_id] = home
                self.flush(shard_id)
            elif view.status(node) is None:
                del self.parked[shard_id]
                if shard_id in self.buffers:
                    self.ask_home(shard_id)
        if self.proxy is None:
            return
        new_node = view.coordinator_node(self.spec.roles)
        if new_node != self.coordinator_node:
            self.coordinator_moved(old, self.coordinator_node, new_node)

    def coordinator_moved(
        self, old_view: ClusterView, previous: Address | None, node: Address | None
    ) -> None:
        self.coordinator_node = node
        self.registered = False
        if previous == self.self_node and self.local_coordinator is not None:
            successor = self.coordinator_ref(node) if node is not None else None
            self.local_coordinator.tell(_retire_message(successor))
            self.local_coordinator = None
        if node is None:
            self.coordinator = None
            leaving = self.leaving
            if leaving is not None and not leaving.done.done():
                leaving.done.set_result(None)  # no member is left to take the shards over
            return
        if node == self.self_node and not self.proxy:
            self.spawn_coordinator(previous)
        # Resolved after the spawn: a local path resolves only once its actor exists.
        self.coordinator = self.coordinator_ref(node)
        self.register()

    def coordinator_ref(self, node: Address) -> ActorRef[Any]:
        root = ActorAddress.of_node(self.system.name, node).root
        return self.system.resolve(f"{root}/system/{coordinator_name(self.type_name)}")

    def spawn_coordinator(self, predecessor: Address | None) -> None:
        from casty.sharding.coordinator import coordinator_behavior

        behavior = coordinator_behavior(
            self.spec, self.type_name, self.system, self.latest_copy, predecessor
        )
        self.predecessor = predecessor
        try:
            self.local_coordinator = self.system.system_actor_of(
                behavior, coordinator_name(self.type_name)
            )
            self.spawn_pending = False
        except InvalidActorName:
            # The previous coordinator of this node is still stopping: try again next tick.
            self.spawn_pending = True

    def latest_copy(self) -> CoordinatorStateCopy | None:
        return self.state_copy

    def stop_local_coordinator(self) -> None:
        if self.local_coordinator is not None:
            self.local_coordinator.tell(_retire_message(None))
            self.local_coordinator = None

    def on_member_removed(self, event: MemberRemoved) -> None:
        if event.member.address == self.self_node and self.system.cluster.is_downed:
            self.go_down()

    def go_down(self) -> None:
        """This node was downed: stop serving at once (the survivors take the shards over)."""
        if self.downed:
            return
        self.downed = True
        log.warning("%s: this node was downed; the region stops serving", self.log_prefix)
        self.stop_local_coordinator()
        for record in list(self.entities.values()):
            record.stop_delivering(FENCED)
            self.ctx.stop(record.ref)
        self.hosted.clear()
        self.homes = [None] * self.num_shards
        self.parked.clear()
        for shard_buffer in self.buffers.values():
            self.buffered -= len(shard_buffer)
            for item in shard_buffer:
                self.dead_letter(item, f"sharding {self.type_name!r}: this node was downed")
        self.buffers.clear()
        self.registered = False
        self.coordinator = None
        if self.leaving is not None and not self.leaving.done.done():
            self.leaving.done.set_result(None)

    def node_of(self, ref: RefLike) -> Address | None:
        node = self.nodes.get(ref, self)  # `self` marks a miss: None is a valid answer
        if node is self:
            address = getattr(ref, "address", None)
            node = node_of(address) if isinstance(address, str) else None
            self.nodes[ref] = node
        return node  # type: ignore[return-value]

    # -- registration -----------------------------------------------------------------------

    def register(self) -> None:
        coordinator = self.coordinator
        if coordinator is None or self.refused is not None or self.downed:
            return
        if self.proxy:
            coordinator.tell(
                RegisterProxy(self.me, self.type_name, self.num_shards, self.spec.hash_version)
            )
            return
        me = self.view.members.get(self.self_node)
        roles = tuple(sorted(me.roles)) if me is not None else ()
        hosted = tuple(HostedShard(s.shard_id, s.epoch) for s in self.hosted.values())
        coordinator.tell(
            RegisterRegion(
                self.me, self.type_name, self.num_shards, self.spec.hash_version, roles, hosted
            )
        )

    def on_register_ack(self, msg: RegisterAck) -> None:
        if self.registered or self.downed:
            return
        self.registered = True
        self.coordinator = msg.coordinator  # type: ignore[assignment]
        for shard_id in list(self.buffers):
            if shard_id not in self.parked:
                self.ask_home(shard_id)
        if self.leaving is not None:
            self.coordinator.tell(GracefulShutdownRequest(self.me))  # type: ignore[union-attr]

    def on_register_refused(self, msg: RegisterRefused) -> None:
        if self.refused is not None:
            return
        self.refused = msg.reason
        log.error("%s: the coordinator refused this region: %s", self.log_prefix, msg.reason)
        self.system.publish(ShardRegionRefused(self.type_name, msg.reason))
        for shard_buffer in self.buffers.values():
            self.buffered -= len(shard_buffer)
            for item in shard_buffer:
                self.dead_letter(item, f"sharding {self.type_name!r} refused: {msg.reason}")
        self.buffers.clear()
        if self.leaving is not None and not self.leaving.done.done():
            self.leaving.done.set_result(None)

    def on_tick(self, msg: _Tick) -> None:
        if self.downed or self.refused is not None:
            return
        if self.spawn_pending and self.coordinator_node == self.self_node:
            self.spawn_coordinator(self.predecessor)
            self.coordinator = self.coordinator_ref(self.self_node)
        self.ticks += 1
        if not self.registered or self.ticks % _REPORT_TICKS == 0:
            # Registered regions report again now and then, so a restarted coordinator
            # rebuilds its table from what really runs.
            self.register()
            if not self.registered:
                return
        leaving = self.leaving
        if leaving is not None and not leaving.done.done() and self.coordinator is not None:
            self.coordinator.tell(GracefulShutdownRequest(self.me))
        deadline = self.system.clock.monotonic() - self.settings.retry_interval
        for shard_id in self.buffers:
            if shard_id not in self.parked and self.asked.get(shard_id, 0.0) <= deadline:
                self.ask_home(shard_id)

    # -- shard homes ------------------------------------------------------------------------

    def on_shard_home(self, msg: ShardHome) -> None:
        shard_id = msg.shard_id
        if not 0 <= shard_id < self.num_shards or self.downed:
            return
        if msg.epoch < self.epochs[shard_id]:
            return  # older than what we know: a late answer
        self.epochs[shard_id] = msg.epoch
        if msg.region == self.me:
            self.host(shard_id, msg.epoch)
            return
        shard = self.hosted.get(shard_id)
        if shard is not None:
            # The coordinator gave the shard to another region: ours is outdated; stop it now.
            self.fence(shard)
        node = self.node_of(msg.region)
        self.parked.pop(shard_id, None)
        if self.view.is_available(node):
            self.homes[shard_id] = msg.region
            self.flush(shard_id)
            return
        self.homes[shard_id] = None
        if self.view.status(node) is not None:
            # Unreachable for now: hold the messages until it is back, or removed.
            self.asked.pop(shard_id, None)
            self.parked[shard_id] = msg.region
        # Otherwise the node is gone and the coordinator has not re-allocated the shard yet:
        # the tick asks again.

    def on_host_shard(self, msg: HostShard) -> None:
        shard_id = msg.shard_id
        if not 0 <= shard_id < self.num_shards or self.downed:
            return
        if msg.epoch < self.epochs[shard_id]:
            return
        self.epochs[shard_id] = msg.epoch
        self.host(shard_id, msg.epoch, msg.replicas)

    def host(self, shard_id: int, epoch: int, replicas: tuple[RefLike, ...] | None = None) -> None:
        shard = self.hosted.get(shard_id)
        if shard is None:
            shard = self.hosted[shard_id] = _Shard(shard_id, epoch)
        elif shard.handoff_to is not None:
            return  # still stopping from a handoff; the coordinator re-sends later
        shard.epoch = max(shard.epoch, epoch)
        self.set_replicas(shard, replicas)
        self.homes[shard_id] = shard
        self.parked.pop(shard_id, None)
        if self.coordinator is not None:
            self.coordinator.tell(ShardStarted(shard_id, shard.epoch, self.me))
        self.flush(shard_id)

    def peer_stores(self) -> tuple[ActorRef[Any], ...]:
        """This type's replica stores on every other up node (a promoted primary's pull asks
        them too, not only its shard's replica slots)."""
        me = self.system.node_address
        return tuple(
            self.system.resolve(
                f"{ActorAddress.of_node(self.system.name, m.address).root}"
                f"{self.me.path}/{REPLICA_STORE_NAME}"
            )
            for m in self.system.cluster.up_members
            if m.address != me
        )

    def set_replicas(self, shard: _Shard, replicas: tuple[RefLike, ...] | None) -> None:
        """Record the shard's epoch and (when given) its replica regions' stores."""
        journal, config = self.spec.journal, self.spec.replication
        if journal is None or config is None:
            return
        state = shard.replication
        if state is None:
            state = shard.replication = ShardReplicas(
                journal, config, self.system, shard.shard_id, self.ledger, 0,
                peers=self.peer_stores,
            )  # fmt: skip
        before = (state.epoch, state.stores)
        state.epoch = shard.epoch
        self.ledger.raise_fence(shard.shard_id, shard.epoch)  # our store refuses older primaries
        if replicas is not None:
            state.stores = tuple(
                self.system.resolve(f"{getattr(r, 'address', r)}/{REPLICA_STORE_NAME}")
                for r in replicas
            )
        if (state.epoch, state.stores) != before and state.stores:
            # New replicas (or a promotion): give them what they miss of the shard's ids now,
            # rather than at each id's next write.
            shard_id, epoch = shard.shard_id, state.epoch
            self.ctx.pipe_to_self(
                sync_shard(state),
                lambda confirmed, error: _Synced(shard_id, epoch, confirmed, error),
            )

    def on_synced(self, msg: _Synced) -> None:
        if msg.error is not None:
            log.warning(
                "%s: shard %d (epoch %d): replicas not caught up: %r",
                self.log_prefix,
                msg.shard_id,
                msg.epoch,
                msg.error,
            )
        else:
            log.debug(
                "%s: shard %d (epoch %d): %d ids caught up on every replica",
                self.log_prefix,
                msg.shard_id,
                msg.epoch,
                msg.confirmed,
            )

    def on_remembered(self, msg: RememberedEntities) -> None:
        shard = self.hosted.get(msg.shard_id)
        if shard is None or shard.epoch != msg.epoch or shard.handoff_to is not None:
            return
        for entity_id in msg.entity_ids:
            if entity_id not in self.entities:
                self.start_entity(shard, entity_id)

    # -- handoff ----------------------------------------------------------------------------

    def on_begin_handoff(self, msg: BeginHandoff) -> None:
        shard_id = msg.shard_id
        if not 0 <= shard_id < self.num_shards:
            return
        home = self.homes[shard_id]
        self.parked.pop(shard_id, None)
        if home is None or home.__class__ is _Shard:
            # We own it (and keep serving until `Handoff`), or we never sent anything there.
            msg.reply_to.tell(BeginHandoffAck(shard_id, self.me))
            return
        self.homes[shard_id] = None
        # Acknowledge through the old home, behind every message we sent it (see the relay).
        home.tell(HandoffAckRelay(shard_id, self.me, msg.reply_to))

    def on_ack_relay(self, msg: HandoffAckRelay) -> None:
        msg.coordinator.tell(BeginHandoffAck(msg.shard_id, msg.region))

    def on_handoff(self, msg: Handoff) -> None:
        shard = self.hosted.get(msg.shard_id)
        if shard is None or shard.epoch > msg.epoch:
            msg.reply_to.tell(ShardStopped(msg.shard_id, msg.epoch, self.me))
            return
        first = shard.handoff_to is None
        shard.handoff_to = msg.reply_to
        if not first:
            return
        self.homes[shard.shard_id] = None
        for entity_id in shard.entities:
            record = self.entities[entity_id]
            record.stop_delivering(HANDOFF)
            self.draining.add(record)
        self.timers.start_single_timer(
            ("handoff", shard.shard_id),
            _HandoffDeadline(shard.shard_id),
            self.settings.handoff_timeout,
        )
        self.check_drained()
        self.maybe_stopped(shard)

    def on_handoff_deadline(self, msg: _HandoffDeadline) -> None:
        shard = self.hosted.get(msg.shard_id)
        if shard is None or shard.handoff_to is None:
            return
        log.warning(
            "%s: shard %d: entities still busy after %.1f s of handoff; stopping them",
            self.log_prefix,
            shard.shard_id,
            self.settings.handoff_timeout,
        )
        for entity_id in shard.entities:
            record = self.entities[entity_id]
            self.draining.discard(record)
            self.ctx.stop(record.ref)

    def maybe_stopped(self, shard: _Shard) -> None:
        """A handed-off shard whose entities have all terminated: report it stopped."""
        if shard.entities or shard.handoff_to is None:
            return
        self.timers.cancel(("handoff", shard.shard_id))
        del self.hosted[shard.shard_id]
        reply_to = shard.handoff_to
        # Report to the coordinator of now: a successor adopted the shard if ours moved.
        target = self.coordinator if self.coordinator is not None else reply_to
        target.tell(ShardStopped(shard.shard_id, shard.epoch, self.me))
        if self.homes[shard.shard_id] is shard:
            self.homes[shard.shard_id] = None
        if shard.shard_id in self.buffers:
            self.ask_home(shard.shard_id)
        self.check_left()

    def fence(self, shard: _Shard) -> None:
        """Stop an outdated shard at once (another region owns it now)."""
        log.info("%s: shard %d moved away; stopping its entities", self.log_prefix, shard.shard_id)
        del self.hosted[shard.shard_id]
        if self.homes[shard.shard_id] is shard:
            self.homes[shard.shard_id] = None
        for entity_id in shard.entities:
            record = self.entities[entity_id]
            record.stop_delivering(FENCED)
            self.draining.discard(record)
            self.ctx.stop(record.ref)

    # -- passivation ------------------------------------------------------------------------

    def on_passivate(self, msg: Passivate) -> None:
        record = self.entities.get(msg.entity_id) if msg.entity_id.__class__ is str else None
        if record is None or record.buffer is not None:
            return
        record.stop_delivering(PASSIVATE)
        if msg.stop_message is not None:
            record.ref.tell(msg.stop_message)
        else:
            self.draining.add(record)
            self.check_drained()

    def on_passivation_tick(self, msg: _PassivationTick) -> None:
        self.tick += 1
        limit = self.tick - _PASSIVATION_TICKS
        idle = [r for r in self.entities.values() if r.buffer is None and r.tick <= limit]
        for record in idle:
            record.stop_delivering(PASSIVATE)
            self.draining.add(record)
        if idle:
            self.check_drained()

    def check_drained(self, msg: object = None) -> None:
        """Stop the stopping entities that have become idle; poll again while some are busy."""
        if msg is None:
            self.drain_polls = 0
        busy = False
        for record in list(self.draining):
            if is_idle(record.ref):
                self.draining.discard(record)
                self.ctx.stop(record.ref)
            else:
                busy = True
        if busy:
            delay = _DRAIN_POLL[min(self.drain_polls, len(_DRAIN_POLL) - 1)]
            self.drain_polls += 1
            self.timers.start_single_timer("drain", _DRAIN_CHECK, delay)

    def on_entity_terminated(self, msg: _EntityTerminated) -> None:
        record = msg.record
        entity_id = record.entity_id
        if self.entities.get(entity_id) is record:
            del self.entities[entity_id]
        self.draining.discard(record)
        buffer = record.buffer
        shard = self.hosted.get(record.shard_id)
        if shard is not None:
            shard.entities.discard(entity_id)
        coordinator = self.coordinator
        if self.remember and coordinator is not None and record.reason in (ACTIVE, PASSIVATE):
            coordinator.tell(EntityStopped(record.shard_id, entity_id))
        if buffer:
            self.reroute(record.shard_id, buffer)
        if shard is not None:
            self.maybe_stopped(shard)

    def reroute(self, shard_id: int, buffer: deque[Any]) -> None:
        """Route again what arrived while an entity stopped (already counted as buffered).

        After a passivation the entity restarts and gets them; when the shard has no home (a
        handoff), they go to the *front* of the shard's buffer, ahead of anything that arrived
        later, so the entity's messages keep their order.
        """
        self.buffered -= len(buffer)
        if self.homes[shard_id] is not None or self.downed or self.refused is not None:
            for item in buffer:
                self.route(item)
            return
        shard_buffer = self.buffers.get(shard_id)
        if shard_buffer is None:
            shard_buffer = self.buffers[shard_id] = deque()
        shard_buffer.extendleft(reversed(buffer))
        self.buffered += len(buffer)
        if shard_id not in self.asked and shard_id not in self.parked:
            self.ask_home(shard_id)

    # -- graceful leave -----------------------------------------------------------------------

    def on_leave_request(self, msg: _LeaveRequest) -> None:
        self.leaving = msg
        if self.proxy or self.downed or self.refused is not None:
            msg.done.set_result(None)
            return
        if (not self.registered and not self.hosted) or self.coordinator_node is None:
            msg.done.set_result(None)
            return
        if self.registered and self.coordinator is not None:
            self.coordinator.tell(GracefulShutdownRequest(self.me))

    def on_handed_off(self, msg: ShardsHandedOff) -> None:
        self.check_left(confirmed=True)

    def check_left(self, *, confirmed: bool = False) -> None:
        leaving = self.leaving
        if leaving is None or leaving.done.done():
            return
        if confirmed and not self.hosted:
            log.info("%s: every shard was handed off before leaving", self.log_prefix)
            leaving.done.set_result(None)

    # -- coordinator state and inspection ----------------------------------------------------

    def on_state_copy(self, msg: CoordinatorStateCopy) -> None:
        if msg.type_name != self.type_name:
            return
        self.state_copy = msg
        # Topology subscribers (external clients) learn where each shard lives.
        allocations: dict[int, Address] = {}
        try:
            for key, shard_ids in msg.table["regions"]:
                node = node_of(key)
                if node is not None:
                    allocations.update(dict.fromkeys(shard_ids, node))
        except (KeyError, TypeError, ValueError):
            return  # a malformed copy: the coordinator's successor would refuse it too
        if allocations != self.allocations:
            self.allocations = allocations
            topology = self.system.cluster.topology_actor
            topology.tell(SetShardAllocations(self.type_name, allocations))

    def on_handover(self, msg: CoordinatorHandover) -> None:
        # A retiring coordinator's handover reached the region's path by mistake: ignore.
        log.debug("%s: ignored a handover sent to the region", self.log_prefix)

    def on_get_state(self, msg: GetShardRegionState) -> None:
        shards = tuple(
            ShardState(s.shard_id, s.epoch, tuple(sorted(s.entities)))
            for s in sorted(self.hosted.values(), key=lambda s: s.shard_id)
        )
        msg.reply_to.tell(ShardRegionState(shards, self.registered, self.refused))

    handlers: Final[dict[type, Callable[[_Region, Any], None]]] = {
        StartEntity: on_start_entity,
        TopologySnapshot: on_topology,
        MemberRemoved: on_member_removed,
        RegisterAck: on_register_ack,
        RegisterRefused: on_register_refused,
        ShardHome: on_shard_home,
        HostShard: on_host_shard,
        RememberedEntities: on_remembered,
        BeginHandoff: on_begin_handoff,
        HandoffAckRelay: on_ack_relay,
        Handoff: on_handoff,
        Passivate: on_passivate,
        _EntityTerminated: on_entity_terminated,
        _Synced: on_synced,
        _Tick: on_tick,
        _PassivationTick: on_passivation_tick,
        _DrainCheck: check_drained,
        _HandoffDeadline: on_handoff_deadline,
        _LeaveRequest: on_leave_request,
        ShardsHandedOff: on_handed_off,
        CoordinatorStateCopy: on_state_copy,
        CoordinatorHandover: on_handover,
        GetShardRegionState: on_get_state,
    }


def _retire_message(successor: ActorRef[Any] | None) -> object:
    from casty.sharding.coordinator import Retire

    return Retire(successor)
