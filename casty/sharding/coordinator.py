"""The shard coordinator: one per sharded type, on the oldest ``up`` member with the type's roles.

It owns the `ShardAllocationTable`, answers `GetShardHome`, allocates shards with the type's
`ShardAllocationStrategy`, runs rebalance rounds with handoff, hands a leaving region's shards
off (moving the replica slots it held first), re-allocates the shards of regions whose node was
removed, and keeps replicated shards' replica counts (`_Coordinator.fix_replicas`).

**Surviving the loss of its node.** After every change the coordinator sends its table (and the
remember-entities lists) to every region (`CoordinatorStateCopy`, at most once per batch of
messages). The region of the next oldest node starts the successor with that copy:

- when the old coordinator retires on purpose (its node leaves), it sends its final state
  (`CoordinatorHandover`, repeated until acknowledged) and the successor starts from it at once;
- when the old coordinator's node is downed, the successor waits until that node is removed
  plus a *removal margin* (the downed side stops serving on its own decision, which may come a
  moment later; see ``docs/cluster.md``), then waits up to ``registration_grace`` for the
  regions of its copy to register, and rebuilds the table from their reports
  (`ShardAllocationTable.rebuild_from_reports`, which keeps the copy's epochs so that the next
  allocation still outranks every earlier one).

A region that turns out to run a shard the table gives to another region (or at an older
epoch) is told to stop it (`Handoff`), so a shard never runs in two regions for long.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, final

from casty.abc import Address
from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.actors.ref import ActorRef
from casty.actors.supervision import SupervisorStrategy
from casty.actors.timers import TimerScheduler
from casty.cluster.events import TopologySnapshot
from casty.cluster.member import MemberStatus
from casty.errors import DecodeError, ShardingError
from casty.replication.protocol import GetShardProgress, ShardProgress
from casty.replication.sharded import REPLICA_STORE_NAME
from casty.sharding.allocation import (
    LeastShardAllocationStrategy,
    RoleFilter,
    ShardAllocationStrategy,
)
from casty.sharding.control import (
    CoordinatorHandover,
    CoordinatorHandoverAck,
    CoordinatorState,
    CoordinatorStateCopy,
    EntityStarted,
    EntityStopped,
    GetCoordinatorState,
    RememberedEntities,
    ShardsHandedOff,
)
from casty.sharding.hashing import incompatibility
from casty.sharding.messages import (
    BeginHandoff,
    BeginHandoffAck,
    GetShardHome,
    GracefulShutdownRequest,
    Handoff,
    HostShard,
    RefLike,
    RegionStopped,
    RegisterAck,
    RegisterProxy,
    RegisterRefused,
    RegisterRegion,
    ShardHome,
    ShardStarted,
    ShardStopped,
)
from casty.sharding.settings import TypeSpec
from casty.sharding.table import ShardAllocationTable
from casty.sharding.view import ClusterView, node_of

if TYPE_CHECKING:
    from casty.cluster.system import ClusteredActorSystem

__all__ = ["Retire", "coordinator_behavior"]

log = logging.getLogger("casty.sharding")

_GRACEFUL = (MemberStatus.LEAVING, MemberStatus.EXITING)
_WAITING, _COLLECTING, _ACTIVE, _RETIRED = range(4)
_ACKING, _STOPPING = range(2)


@final
class Retire:
    """From the local region: stop coordinating; hand the state to ``successor`` if given."""

    __slots__ = ("successor",)

    def __init__(self, successor: ActorRef[Any] | None) -> None:
        self.successor = successor


@final
class _Tick:
    __slots__ = ()


@final
class _Rebalance:
    __slots__ = ()


@final
class _Publish:
    __slots__ = ()


@final
class _GraceOver:
    __slots__ = ()


@final
class _PredecessorGone:
    __slots__ = ()


@final
class _PromotionDue:
    __slots__ = ("shard_id",)

    def __init__(self, shard_id: int) -> None:
        self.shard_id = shard_id


@final
class _Promotion:
    """A replicated shard whose replica regions were asked how advanced their copies are."""

    __slots__ = ("answers", "candidates", "epoch", "fallback", "fence")

    def __init__(self, candidates: list[str], epoch: int, fallback: bool = False) -> None:
        self.candidates = candidates  # in slot order (ties go to the earlier slot)
        self.epoch = epoch  # the stores asked were fenced at it
        self.answers: dict[str, tuple[int, int]] = {}  # region key -> (epoch, total)
        self.fallback = fallback  # no replica slot is among the candidates
        self.fence = 0  # the highest fence the stores held before the question


@final
class _RemoveNode:
    __slots__ = ("node",)

    def __init__(self, node: Address) -> None:
        self.node = node


@final
class _Region:
    """A registered region."""

    __slots__ = ("node", "ref", "roles", "shutting_down")

    def __init__(self, ref: RefLike, node: Address | None, roles: frozenset[str]) -> None:
        self.ref = ref
        self.node = node
        self.roles = roles
        self.shutting_down = False


@final
class _Handoff:
    """A shard on the move: waiting for acknowledgements, then for its owner to stop it."""

    __slots__ = ("deadline", "epoch", "owner", "pending", "phase")

    def __init__(self, owner: str, epoch: int, pending: set[str], deadline: float) -> None:
        self.owner = owner
        self.epoch = epoch
        self.pending = pending
        self.deadline = deadline
        self.phase = _ACKING


_TICK = _Tick()
_REBALANCE = _Rebalance()
_PUBLISH = _Publish()


def coordinator_behavior(
    spec: TypeSpec,
    type_name: str,
    system: ClusteredActorSystem,
    latest_copy: Callable[[], CoordinatorStateCopy | None],
    predecessor: Address | None,
) -> Behavior[Any]:
    """The coordinator of ``type_name`` (spawned by the region of the oldest node).

    ``latest_copy`` gives the local region's latest `CoordinatorStateCopy`. A coordinator that
    fails is restarted (at most 10 times a minute): it starts again from the latest copy and
    the regions' reports, which every region re-sends periodically.
    """
    starts = 0

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
            nonlocal starts
            starts += 1
            coordinator = _Coordinator(ctx, timers, spec, type_name, system)
            coordinator.start(latest_copy(), predecessor if starts == 1 else None)
            return Behaviors.receive(coordinator.receive)

        return Behaviors.with_timers(with_timers)

    return Behaviors.supervise(
        Behaviors.setup(setup), SupervisorStrategy.restart(max_restarts=10, within=60.0)
    )


@final
class _Coordinator:
    """The state and handlers of one coordinator (see the module docstring)."""

    def __init__(
        self,
        ctx: ActorContext[Any],
        timers: TimerScheduler[Any],
        spec: TypeSpec,
        type_name: str,
        system: ClusteredActorSystem,
    ) -> None:
        self.ctx = ctx
        self.timers = timers
        self.spec = spec
        self.type_name = type_name
        self.system = system
        self.settings = spec.settings
        self.me: ActorRef[Any] = ctx.self
        self.clock = system.clock
        margin = spec.settings.removal_margin
        self.margin = system.cluster_config.downing.stable_after if margin is None else margin
        inner: ShardAllocationStrategy[str] = (
            spec.allocation_strategy or LeastShardAllocationStrategy()
        )
        self.strategy: ShardAllocationStrategy[str] = (
            RoleFilter(inner, roles=spec.roles, region_roles=self.region_roles)
            if spec.roles
            else inner
        )
        self.table = ShardAllocationTable(spec.num_shards)
        self.previous: ShardAllocationTable | None = None
        self.remembered: dict[int, set[str]] = {}
        self.regions: dict[str, _Region] = {}
        self.proxies: dict[str, RefLike] = {}
        # Regions of a retiring predecessor's table that have not registered with us yet.
        self.inherited: set[str] = set()
        self.reports: dict[str, dict[int, int]] = {}
        self.waiting: dict[int, dict[str, RefLike]] = {}
        self.starting: dict[int, float] = {}
        self.handoffs: dict[int, _Handoff] = {}
        self.promoting: dict[int, _Promotion] = {}
        # Shards kept unallocated since (monotonic seconds): every copy that answered was
        # behind the most advanced one ever promoted (`promoted`).
        self.held_back: dict[int, float] = {}
        self.phase = _ACTIVE
        self.predecessor: Address | None = None
        self.view = ClusterView()
        self.last_status: dict[Address, MemberStatus] = {}
        self.final_status: dict[Address, MemberStatus] = {}  # last status of departed nodes
        self.down_since: dict[Address, float] = {}  # when each node was first seen down
        self.view_ready = False
        self.publish_pending = False
        self.successor: ActorRef[Any] | None = None
        self.log_prefix = f"sharding {type_name!r} coordinator"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, state_copy: CoordinatorStateCopy | None, predecessor: Address | None) -> None:
        self.system.cluster.subscribe(self.me)
        self.timers.start_periodic_timer("tick", _TICK, self.settings.retry_interval)
        if state_copy is not None:
            try:
                self.previous = ShardAllocationTable.from_wire(state_copy.table)
                self.remembered = _remembered_from_wire(state_copy.remembered)
            except (DecodeError, ShardingError, TypeError, ValueError) as exc:
                log.warning("%s: ignored a malformed state copy: %s", self.log_prefix, exc)
                self.previous = None
            if self.previous is not None and self.previous.num_shards != self.spec.num_shards:
                self.previous = None
        if predecessor is not None:
            self.phase = _WAITING
            self.predecessor = predecessor
            log.info("%s: waiting for the state of %s", self.log_prefix, predecessor)
        elif self.previous is not None:
            self.begin_collecting()
        else:
            self.activate()

    def receive(self, ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if msg.__class__ is Retire:
            return self.retire(msg)
        handler = self.handlers.get(msg.__class__)
        if handler is None:
            return Behaviors.unhandled()
        if self.phase == _RETIRED and msg.__class__ not in _WHILE_RETIRED:
            return Behaviors.same()  # the regions ask the successor again
        handler(self, msg)
        return Behaviors.same()

    def retire(self, msg: Retire) -> Behavior[Any]:
        if msg.successor is None:
            return Behaviors.stopped()
        log.info("%s: retiring; handing the state to %s", self.log_prefix, msg.successor.address)
        self.phase = _RETIRED
        self.successor = msg.successor
        self.timers.cancel("rebalance")
        self.send_handover()
        return Behaviors.same()

    def send_handover(self) -> None:
        if self.successor is not None:
            self.successor.tell(
                CoordinatorHandover(
                    self.type_name,
                    self.table.to_wire(),
                    _remembered_to_wire(self.remembered),
                    self.me,
                )
            )

    def on_handover_ack(self, msg: CoordinatorHandoverAck) -> None:
        if self.phase == _RETIRED:
            self.ctx.stop(self.me)

    def on_handover(self, msg: CoordinatorHandover) -> None:
        msg.reply_to.tell(CoordinatorHandoverAck(self.type_name))
        if self.phase not in (_WAITING, _COLLECTING) or msg.type_name != self.type_name:
            return
        try:
            table = ShardAllocationTable.from_wire(msg.table)
            remembered = _remembered_from_wire(msg.remembered)
        except (DecodeError, ShardingError, TypeError, ValueError) as exc:
            log.warning("%s: ignored a malformed handover: %s", self.log_prefix, exc)
            return
        if table.num_shards != self.spec.num_shards:
            return
        for shard_id in table.in_handoff:
            table.abort_handoff(shard_id)  # the moves of the predecessor start over
        self.table = table
        self.inherited = set(table.regions) - self.regions.keys()
        self.remembered = remembered
        reports, self.reports = self.reports, {}
        self.phase = _ACTIVE
        for key, hosted in reports.items():
            self.reconcile(key, hosted)
        log.info("%s: took over from the retiring coordinator", self.log_prefix)
        self.activate()

    def begin_collecting(self) -> None:
        self.phase = _COLLECTING
        self.timers.start_single_timer("grace", _GraceOver(), self.settings.registration_grace)
        self.check_collected()

    def expected_regions(self) -> set[str]:
        previous = self.previous
        if previous is None:
            return set()
        return {key for key in previous.regions if self.view.is_available(node_of(key))}

    def check_collected(self, msg: object = None) -> None:
        if self.phase != _COLLECTING:
            return
        if msg is None and (
            not self.view_ready or not self.expected_regions() <= self.reports.keys()
        ):
            return  # the grace timer (a `_GraceOver` message) ends the wait in any case
        self.timers.cancel("grace")
        reports, self.reports = self.reports, {}
        self.table = ShardAllocationTable.rebuild_from_reports(
            reports, num_shards=self.spec.num_shards, previous=self.previous
        )
        self.phase = _ACTIVE
        # Reporters whose shards lost to a higher epoch (or a conflict) stop them.
        for key, hosted in reports.items():
            for shard_id, epoch in hosted.items():
                if not self.table.is_current(shard_id, key, epoch):
                    self.region_ref(key).tell(Handoff(shard_id, epoch, self.me))
        log.info("%s: rebuilt the table from %d region reports", self.log_prefix, len(reports))
        self.activate()

    def activate(self) -> None:
        self.phase = _ACTIVE
        self.timers.start_periodic_timer("rebalance", _REBALANCE, self.settings.rebalance_interval)
        for key, region in self.regions.items():
            self.table.add_region(key)
            if region.shutting_down:
                self.shut_down_region(key)
        for shard_id in list(self.waiting):
            self.serve_waiting(shard_id)
        for shard_id in list(self.remembered):
            if self.table.owner(shard_id) is None:
                self.allocate(shard_id)
        self.sweep()
        self.fix_replicas()
        self.changed()

    # -- registration -----------------------------------------------------------------------

    def on_register_region(self, msg: RegisterRegion) -> None:
        if not self.compatible(msg.region, msg.type_name, msg.num_shards, msg.hash_version):
            return
        key = _key(msg.region)
        node = node_of(key)
        if self.view_ready and node is not None and self.view.status(node) is None:
            # Not a member (any more): a removed node's late or retried registration would
            # stay in the table until the next membership change, since only changes sweep.
            # A region of a node that joins retries once our view has its node.
            return
        region = self.regions.get(key)
        if region is None:
            region = self.regions[key] = _Region(msg.region, node_of(key), frozenset(msg.roles))
            self.inherited.discard(key)
            self.proxies.pop(key, None)
        region.ref = msg.region
        num_shards = self.spec.num_shards
        hosted = {
            h.shard_id: h.epoch
            for h in msg.hosted
            if type(h.shard_id) is int
            and 0 <= h.shard_id < num_shards
            and type(h.epoch) is int
            and h.epoch >= 1
        }
        msg.region.tell(RegisterAck(self.me))
        if self.phase != _ACTIVE:
            self.reports[key] = hosted
            self.check_collected()
            return
        self.reconcile(key, hosted)
        for shard_id in list(self.waiting):
            if self.table.owner(shard_id) is None:
                self.serve_waiting(shard_id)
        self.fix_replicas()

    def on_register_proxy(self, msg: RegisterProxy) -> None:
        if not self.compatible(msg.proxy, msg.type_name, msg.num_shards, msg.hash_version):
            return
        self.proxies[_key(msg.proxy)] = msg.proxy
        msg.proxy.tell(RegisterAck(self.me))

    def compatible(self, ref: RefLike, type_name: str, num_shards: int, version: int) -> bool:
        reason: str | None
        if type_name != self.type_name:
            reason = f"sharded type {type_name!r} is not {self.type_name!r}"
        else:
            reason = incompatibility(
                type_name,
                num_shards=num_shards,
                hash_version=version,
                expected_num_shards=self.spec.num_shards,
                expected_hash_version=self.spec.hash_version,
            )
        if reason is None:
            return True
        log.warning("%s: refused %s: %s", self.log_prefix, _key(ref), reason)
        ref.tell(RegisterRefused(type_name, reason))
        return False

    def reconcile(self, key: str, hosted: dict[int, int]) -> None:
        """Merge a region's report of what it runs into the table (the report is the truth)."""
        version = self.table.version
        try:
            stale = self.table.apply_report(key, hosted)
        except Exception as exc:  # a malformed report: keep the region, ignore its shards
            log.warning("%s: ignored the report of %s: %s", self.log_prefix, key, exc)
            self.table.add_region(key)
            return
        for region_key, shard_id, epoch in stale:
            self.region_ref(region_key).tell(Handoff(shard_id, epoch, self.me))
        for shard_id in self.table.shards_of(key) - hosted.keys():
            if shard_id not in self.starting and shard_id not in self.handoffs:
                self.deallocate(shard_id)
        if self.table.version != version:
            self.changed()

    def region_roles(self, key: str) -> frozenset[str]:
        region = self.regions.get(key)
        node = region.node if region is not None else node_of(key)
        member = self.view.members.get(node) if node is not None else None
        if member is not None:
            return member.roles
        return region.roles if region is not None else frozenset()

    def region_ref(self, key: str) -> RefLike:
        region = self.regions.get(key)
        return region.ref if region is not None else self.system.resolve(key)

    # -- shard homes ------------------------------------------------------------------------

    def on_get_shard_home(self, msg: GetShardHome) -> None:
        shard_id = msg.shard_id
        if type(shard_id) is not int or not 0 <= shard_id < self.spec.num_shards:
            return
        waiting = self.waiting.get(shard_id)
        if waiting is None:
            waiting = self.waiting[shard_id] = {}
        waiting[_key(msg.reply_to)] = msg.reply_to
        if self.phase == _ACTIVE:
            self.serve_waiting(shard_id)

    def serve_waiting(self, shard_id: int) -> None:
        """Answer the askers of ``shard_id`` if it has a settled home; allocate it if none."""
        if shard_id in self.handoffs or shard_id in self.starting or shard_id in self.promoting:
            return
        owner = self.table.owner(shard_id)
        if owner is None:
            self.allocate(shard_id)
            return
        region = self.regions.get(owner)
        node = region.node if region is not None else node_of(owner)
        if self.view.is_available(node):
            waiting = self.waiting.pop(shard_id, None)
        else:
            # The askers hold their messages until the owner is back; keep them waiting too,
            # so that when the owner is removed the shard is re-allocated for them at once.
            waiting = self.waiting.get(shard_id)
        if waiting:
            home = ShardHome(shard_id, self.region_ref(owner), self.table.epoch(shard_id))
            for ref in waiting.values():
                ref.tell(home)

    def eligible(self) -> dict[str, frozenset[int]]:
        """The regions that may receive shards and replica slots, with what they host (a
        strategy's input): the registered regions on ``up`` nodes that are not leaving, and
        those inherited from a retiring predecessor that have not registered again yet (they
        do a moment later; shards handed off meanwhile must still find their replicas)."""
        return {
            key: self.table.shards_of(key)
            for key in self.table.regions
            if (key in self.regions or key in self.inherited)
            and self.view.is_up(node_of(key))
            and not self.shutting_down(key)
        }

    def shutting_down(self, key: str) -> bool:
        region = self.regions.get(key)
        return region is not None and region.shutting_down

    def departing(self, key: str) -> bool:
        """Whether ``key``'s region goes away on purpose (it asked to, or its node leaves): its
        replica store stops with it, so its replica slots must move first."""
        return self.shutting_down(key) or self.view.status(node_of(key)) in _GRACEFUL

    def allocate(self, shard_id: int) -> None:
        current = self.eligible()
        if not current or shard_id in self.promoting:
            return  # kept waiting: a region registering or coming up retries
        waiting = self.waiting.get(shard_id)
        requester = next(iter(waiting), "") if waiting else ""
        if self.spec.replication is not None:
            # A replicated shard goes to the most advanced copy of its events (`promote` asks
            # and fences them). Its replica slots hold one, but so may every other region: the
            # lost primary's node restarted (its journal holds every write it acknowledged),
            # an earlier replica, a slot that was not caught up yet. So all are asked, the
            # slots first (ties go to them); with no slot eligible (their nodes restarting, or
            # this coordinator's table was rebuilt without the shard) a shard nobody holds
            # anything of is placed by the strategy (`promoted`).
            slots = [r for r in self.table.replicas(shard_id) if r in current]
            others = sorted(key for key in current if key not in slots)
            self.promote(shard_id, [*slots, *others], fallback=not slots)
            return
        key = self.strategy.allocate_shard(requester, shard_id, current)
        if key is None or key not in current:
            return
        self.place(shard_id, key, current)

    def promote(self, shard_id: int, candidates: list[str], fallback: bool = False) -> None:
        """Ask the candidates' replica stores how advanced their copies of ``shard_id`` are
        (fencing them at the coming epoch); `promoted` places the shard once all answered or
        ``ack_timeout`` passed (a store that did not answer is skipped)."""
        config = self.spec.replication
        assert config is not None  # only replicated shards have replica slots
        epoch = self.table.epoch(shard_id) + 1
        self.promoting[shard_id] = _Promotion(candidates, epoch, fallback)
        for key in candidates:
            store = self.system.resolve(f"{key}/{REPLICA_STORE_NAME}")
            store.tell(GetShardProgress(shard_id, epoch, self.me, key))
        self.timers.start_single_timer(
            ("promote", shard_id), _PromotionDue(shard_id), config.ack_timeout
        )

    def on_shard_progress(self, msg: ShardProgress) -> None:
        promotion = self.promoting.get(msg.shard)
        if promotion is None or msg.tag not in promotion.candidates:
            return
        promotion.answers[msg.tag] = (msg.epoch, msg.total)
        promotion.fence = max(promotion.fence, msg.fence)
        if len(promotion.answers) == len(promotion.candidates):
            self.promoted(_PromotionDue(msg.shard))

    def promoted(self, msg: _PromotionDue) -> None:
        shard_id = msg.shard_id
        promotion = self.promoting.pop(shard_id, None)
        if promotion is None:
            return
        self.timers.cancel(("promote", shard_id))
        current = self.eligible()
        if self.table.owner(shard_id) is not None:
            # Adopted from a region's report meanwhile. Below the epoch the asked stores were
            # fenced at it could not write: move it to a new epoch.
            if self.table.epoch(shard_id) < promotion.epoch and shard_id not in self.handoffs:
                self.begin_handoff(shard_id)
            return
        if not current:
            return  # nowhere to go yet: the tick or a registering region retries
        alive = [key for key in promotion.candidates if key in current]
        answered = [key for key in alive if key in promotion.answers]
        blank = promotion.fence == 0 and self.table.mark(shard_id) == (0, 0)
        if promotion.fallback and blank and all(promotion.answers[k] == (0, 0) for k in answered):
            # Nobody holds anything of the shard (a new one): the strategy places it.
            requester = next(iter(self.waiting.get(shard_id, ())), "")
            chosen = self.strategy.allocate_shard(requester, shard_id, current)
            if chosen is not None and chosen in current:
                self.place(shard_id, chosen, current)
            return
        # Stores fenced above the table's epoch (the table was rebuilt without the shard's
        # history): the new epoch must outrank their fences.
        self.table.raise_epoch(shard_id, promotion.fence)
        if answered:
            key = max(answered, key=lambda k: (promotion.answers[k], -alive.index(k)))
            if self.behind_the_mark(shard_id, promotion.answers[key]):
                return  # a tick (an asker waits) or the next asker promotes it again
        elif alive:
            key = alive[0]
        else:
            self.allocate(shard_id)
            return
        log.info(
            "%s: shard %d: promoting %s (copies as (epoch, total): %s)",
            self.log_prefix,
            shard_id,
            key,
            promotion.answers,
        )
        self.place(shard_id, key, current)

    def behind_the_mark(self, shard_id: int, best: tuple[int, int]) -> bool:
        """Whether to keep ``shard_id`` unallocated: ``best``, the most advanced copy that
        answered, is behind the most advanced copy ever promoted (`ShardAllocationTable.mark`),
        so a copy holding acknowledged events is down (its node restarting, say; or a new
        replica was lost before it was caught up). Waits at most ``5 * ack_timeout`` seconds,
        then the most advanced copy that answers is promoted (and a warning logged: events
        only the missing copy held are lost)."""
        config = self.spec.replication
        assert config is not None
        mark = self.table.mark(shard_id)
        if best >= mark:
            self.held_back.pop(shard_id, None)
            self.table.raise_mark(shard_id, best)
            return False
        now = self.clock.monotonic()
        since = self.held_back.setdefault(shard_id, now)
        if now - since < 5 * config.ack_timeout:
            if since == now:
                log.info(
                    "%s: shard %d: the copies that answer are behind the most advanced one "
                    "promoted before (%s < %s): waiting for it",
                    self.log_prefix, shard_id, best, mark,
                )  # fmt: skip
            return True
        log.warning(
            "%s: shard %d: promoting a copy behind the most advanced one promoted before "
            "(%s < %s) after %.1f s: events only that copy held are lost",
            self.log_prefix, shard_id, best, mark, now - since,
        )  # fmt: skip
        del self.held_back[shard_id]
        return False

    def place(self, shard_id: int, key: str, current: dict[str, frozenset[int]]) -> None:
        """Allocate ``shard_id`` to ``key`` at a new epoch, with its replicas, and host it."""
        self.held_back.pop(shard_id, None)
        epoch = self.table.allocate(shard_id, key)
        config = self.spec.replication
        if config is not None:  # fill its replica slots from ``current`` (never ``key``)
            chosen = self.table.choose_replicas(shard_id, key, current, config.replicas)
            if chosen != self.table.replicas(shard_id):
                self.table.set_replicas(shard_id, chosen)
        self.starting[shard_id] = self.clock.monotonic()
        self.send_host(shard_id, key, epoch)
        self.changed()

    def fix_replicas(self) -> None:
        """Keep every allocated shard's replica slots on regions that stay, and full.

        A slot on a departing region moves now, while that region's replica store still
        answers (it stops with its node), so the primary's writes never wait on a stopped
        store; a shard with too few slots (a replica was lost, or too few regions were up
        when it was placed) gets more as regions become eligible. Each owner whose replicas
        changed is told so (`HostShard` at the same epoch) and catches the new ones up.
        Shards in handoff are left alone: their next placement chooses replicas anew.
        """
        config = self.spec.replication
        if config is None or self.phase != _ACTIVE:
            return
        current = self.eligible()
        for key in sorted(self.table.regions):
            for shard_id in sorted(self.table.shards_of(key)):
                if shard_id in self.handoffs:
                    continue
                replicas = self.table.replicas(shard_id)
                staying = [r for r in replicas if not self.departing(r)]
                if len(staying) == len(replicas) and (
                    len(replicas) >= config.replicas or current.keys() - {key} <= set(replicas)
                ):
                    continue
                # Staying slots are kept (even on a node unreachable for now); a departing slot
                # with no region to take it over stays until its region is gone.
                chosen = self.table.choose_replicas(
                    shard_id, key, [*current, *staying], config.replicas
                )
                spare = max(0, len(replicas) - len(chosen))
                chosen = (*chosen, *[r for r in replicas if r not in staying][:spare])
                if chosen != replicas:
                    self.table.set_replicas(shard_id, chosen)
                    self.send_host(shard_id, key, self.table.epoch(shard_id))
                    self.changed()

    def send_host(self, shard_id: int, key: str, epoch: int) -> None:
        ref = self.region_ref(key)
        replicas = tuple(self.region_ref(r) for r in self.table.replicas(shard_id))
        ref.tell(HostShard(shard_id, epoch, replicas))
        entity_ids = self.remembered.get(shard_id)
        if entity_ids:
            ref.tell(RememberedEntities(shard_id, epoch, tuple(sorted(entity_ids))))

    def on_shard_started(self, msg: ShardStarted) -> None:
        shard_id = msg.shard_id
        key = _key(msg.region)
        if self.phase != _ACTIVE:
            # The table is not built yet: judging by it would stop a shard that the previous
            # coordinator (or our own previous incarnation) allocated a moment ago. The news
            # amends the region's report instead (a region that has not reported yet will
            # include the shard in its report).
            report = self.reports.get(key)
            epoch = msg.epoch
            if (
                report is not None
                and type(shard_id) is int
                and 0 <= shard_id < self.spec.num_shards
                and type(epoch) is int
                and epoch >= 1
            ):
                report[shard_id] = max(report.get(shard_id, 0), epoch)
            return
        if self.table.is_current(shard_id, key, msg.epoch):
            self.starting.pop(shard_id, None)
            self.serve_waiting(shard_id)
        elif self.table.owner(shard_id) != key:
            msg.region.tell(Handoff(shard_id, msg.epoch, self.me))  # outdated: stop it

    def deallocate(self, shard_id: int) -> None:
        """The owner no longer runs ``shard_id``: unallocate it (its epoch is kept)."""
        self.table.begin_handoff(shard_id)
        self.table.complete_handoff(shard_id)
        self.starting.pop(shard_id, None)
        self.changed()
        self.after_unallocated(shard_id)

    def after_unallocated(self, shard_id: int) -> None:
        if self.waiting.get(shard_id) or self.remembered.get(shard_id):
            self.allocate(shard_id)

    # -- handoff ----------------------------------------------------------------------------

    def on_rebalance(self, msg: _Rebalance) -> None:
        if self.view.unreachable:
            return  # an unreachable region would never acknowledge
        if self.spec.replication is not None:
            return  # a replicated shard's events are on its replicas only: it stays put
        current = self.eligible()
        moving = frozenset(self.handoffs) | frozenset(self.starting)
        for shard_id in sorted(self.strategy.rebalance(current, moving)):
            if shard_id not in moving and self.table.owner(shard_id) is not None:
                self.begin_handoff(shard_id)

    def begin_handoff(self, shard_id: int) -> None:
        owner = self.table.begin_handoff(shard_id)
        epoch = self.table.epoch(shard_id)
        pending = {
            key
            for key, region in self.regions.items()
            if self.view.status(region.node) not in (None, MemberStatus.DOWN)
        }
        pending.update(
            key
            for key in self.proxies
            if self.view.status(node_of(key)) not in (None, MemberStatus.DOWN)
        )
        pending.add(owner)
        deadline = self.clock.monotonic() + self.settings.handoff_timeout
        self.handoffs[shard_id] = _Handoff(owner, epoch, pending, deadline)
        begin = BeginHandoff(shard_id, self.me)
        for key in pending:
            self.region_ref(key).tell(begin)
        self.changed()

    def on_begin_handoff_ack(self, msg: BeginHandoffAck) -> None:
        handoff = self.handoffs.get(msg.shard_id)
        if handoff is None or handoff.phase != _ACKING:
            return
        handoff.pending.discard(_key(msg.region))
        self.check_acked(msg.shard_id, handoff)

    def check_acked(self, shard_id: int, handoff: _Handoff) -> None:
        if handoff.phase == _ACKING and not handoff.pending:
            handoff.phase = _STOPPING
            handoff.deadline = self.clock.monotonic() + self.settings.handoff_timeout
            self.region_ref(handoff.owner).tell(Handoff(shard_id, handoff.epoch, self.me))

    def on_shard_stopped(self, msg: ShardStopped) -> None:
        shard_id = msg.shard_id
        key = _key(msg.region)
        if self.phase != _ACTIVE:
            report = self.reports.get(key)  # amends the region's report, as `on_shard_started`
            if report is not None and report.get(shard_id) == msg.epoch:
                del report[shard_id]
            return
        handoff = self.handoffs.get(shard_id)
        if handoff is not None:
            if handoff.owner != key or handoff.epoch != msg.epoch:
                return
            del self.handoffs[shard_id]
            self.table.complete_handoff(shard_id)
            self.changed()
            self.after_unallocated(shard_id)
        elif self.table.is_current(shard_id, key, msg.epoch):
            self.deallocate(shard_id)
        else:
            return
        self.check_shut_down(key)

    def abort_handoff(self, shard_id: int) -> None:
        self.handoffs.pop(shard_id, None)
        self.table.abort_handoff(shard_id)
        self.changed()
        self.serve_waiting(shard_id)

    # -- regions leaving ----------------------------------------------------------------------

    def on_graceful_shutdown(self, msg: GracefulShutdownRequest) -> None:
        key = _key(msg.region)
        region = self.regions.get(key)
        if region is None:
            return  # not registered with us yet: it registers, then asks again
        if not region.shutting_down:
            log.info("%s: %s leaves; handing its shards off", self.log_prefix, key)
        region.shutting_down = True
        if self.phase == _ACTIVE:
            self.fix_replicas()  # before its shards move: their placement then avoids it too
            self.shut_down_region(key)

    def shut_down_region(self, key: str) -> None:
        for shard_id in sorted(self.table.shards_of(key)):
            if shard_id not in self.handoffs:
                self.begin_handoff(shard_id)
        self.check_shut_down(key)

    def check_shut_down(self, key: str) -> None:
        region = self.regions.get(key)
        if region is not None and region.shutting_down and not self.table.shards_of(key):
            region.ref.tell(ShardsHandedOff(self.type_name))

    def on_region_stopped(self, msg: RegionStopped) -> None:
        self.remove_region(_key(msg.region))

    def remove_region(self, key: str) -> None:
        self.regions.pop(key, None)
        self.inherited.discard(key)
        self.proxies.pop(key, None)
        self.reports.pop(key, None)
        # Shards of other owners with a replica slot on ``key``: the slot goes with it.
        slotted = {
            shard_id: self.table.replicas(shard_id)
            for region, shards in self.table.allocations().items()
            if region != key
            for shard_id in shards
            if key in self.table.replicas(shard_id)
        }
        freed = self.table.remove_region(key)
        for shard_id, handoff in list(self.handoffs.items()):
            if handoff.owner == key:
                del self.handoffs[shard_id]
            elif key in handoff.pending:
                handoff.pending.discard(key)
                self.check_acked(shard_id, handoff)
        if freed:
            log.info("%s: %s is gone; %d shards to re-allocate", self.log_prefix, key, len(freed))
        for shard_id in sorted(freed):
            self.starting.pop(shard_id, None)
            self.after_unallocated(shard_id)
        self.fix_replicas()
        for shard_id, before in slotted.items():
            owner = self.table.owner(shard_id)
            left = tuple(r for r in before if r != key)
            if (
                owner is not None
                and shard_id not in self.handoffs
                and self.table.replicas(shard_id) == left
            ):
                # No region could take the slot (`fix_replicas` told the owner nothing): tell
                # it the slot is gone, so that its writes stop waiting on a removed node's
                # store (with fewer stores than min_acks they are refused at once).
                self.send_host(shard_id, owner, self.table.epoch(shard_id))
        self.changed()

    # -- topology -----------------------------------------------------------------------------

    def on_topology(self, snapshot: TopologySnapshot) -> None:
        previous = self.last_status
        self.view = view = ClusterView(snapshot)
        self.last_status = {node: member.status for node, member in view.members.items()}
        now = self.clock.monotonic()
        for node, status in self.last_status.items():
            if status is MemberStatus.DOWN and node not in self.down_since:
                self.down_since[node] = now
        for node, status in previous.items():
            if node not in view.members:
                self.final_status[node] = status
        if self.phase == _RETIRED:
            return
        self.view_ready = True
        self.sweep()
        self.check_collected()
        predecessor = self.predecessor
        if (
            self.phase == _WAITING
            and predecessor is not None
            and view.status(predecessor) is None
            and not self.timers.is_active("predecessor")
        ):
            self.timers.start_single_timer(
                "predecessor", _PredecessorGone(), self.removal_delay(predecessor)
            )
        if self.phase == _ACTIVE:
            for shard_id in list(self.waiting):
                if self.table.owner(shard_id) is None:
                    self.serve_waiting(shard_id)
            self.fix_replicas()  # a node leaving, or a node up where replicas were too few

    def sweep(self) -> None:
        """Schedule the removal of regions whose node is no longer a member.

        A node that left gracefully (last seen leaving or exiting) handed its shards off, so
        its regions go at once; any other node may have been downed, so its shards move only
        after the removal margin.
        """
        if not self.view_ready:
            return
        nodes = {region.node for region in self.regions.values()}
        nodes.update(node_of(key) for key in self.table.regions)
        nodes.update(node_of(key) for key in self.proxies)
        for node in nodes:
            if node is None or self.view.status(node) is not None:
                continue
            if self.timers.is_active(("remove", node)):
                continue
            delay = self.removal_delay(node)
            if delay <= 0.0:
                self.remove_node(_RemoveNode(node))
            else:
                self.timers.start_single_timer(("remove", node), _RemoveNode(node), delay)

    def removal_delay(self, node: Address) -> float:
        """Seconds until a removed node's shards may move: none after a graceful leave, else
        the removal margin counted from when this coordinator first saw the node down."""
        if self.final_status.get(node) in _GRACEFUL:
            return 0.0
        since = self.down_since.get(node)
        if since is None:
            return self.margin
        return max(0.0, since + self.margin - self.clock.monotonic())

    def remove_node(self, msg: _RemoveNode) -> None:
        node = msg.node
        if self.view.status(node) is not None:
            return  # a new incarnation at that address: its region re-registers
        keys = {key for key, region in self.regions.items() if region.node == node}
        keys.update(key for key in self.table.regions if node_of(key) == node)
        keys.update(key for key in self.proxies if node_of(key) == node)
        for key in sorted(keys):
            self.remove_region(key)

    def on_predecessor_gone(self, msg: _PredecessorGone) -> None:
        if self.phase != _WAITING:
            return
        log.info("%s: the previous coordinator's node is gone", self.log_prefix)
        if self.previous is not None:
            self.begin_collecting()
        else:
            reports, self.reports = self.reports, {}
            self.phase = _ACTIVE
            for key, hosted in reports.items():
                self.reconcile(key, hosted)
            self.activate()

    # -- housekeeping -------------------------------------------------------------------------

    def on_tick(self, msg: _Tick) -> None:
        if self.phase == _RETIRED:
            self.send_handover()
            return
        if self.phase != _ACTIVE:
            return
        now = self.clock.monotonic()
        retry = self.settings.retry_interval
        for shard_id, since in list(self.starting.items()):
            if now - since >= retry:
                owner = self.table.owner(shard_id)
                if owner is None:
                    del self.starting[shard_id]
                    continue
                self.starting[shard_id] = now
                self.send_host(shard_id, owner, self.table.epoch(shard_id))
        for shard_id, handoff in list(self.handoffs.items()):
            if now < handoff.deadline:
                continue
            if handoff.phase == _ACKING:
                log.warning(
                    "%s: shard %d: handoff not acknowledged by %s; it stays",
                    self.log_prefix,
                    shard_id,
                    ", ".join(sorted(handoff.pending)),
                )
                self.abort_handoff(shard_id)
            else:
                handoff.deadline = now + self.settings.handoff_timeout
                self.region_ref(handoff.owner).tell(Handoff(shard_id, handoff.epoch, self.me))
        for shard_id in list(self.waiting):
            if self.table.owner(shard_id) is None and shard_id not in self.handoffs:
                self.allocate(shard_id)

    def changed(self) -> None:
        if not self.publish_pending and self.phase == _ACTIVE:
            self.publish_pending = True
            self.me.tell(_PUBLISH)  # after the messages already queued: one copy per batch

    def on_publish(self, msg: _Publish) -> None:
        self.publish_pending = False
        copy = CoordinatorStateCopy(
            self.type_name, self.table.to_wire(), _remembered_to_wire(self.remembered)
        )
        for region in self.regions.values():
            region.ref.tell(copy)

    def on_entity_started(self, msg: EntityStarted) -> None:
        entity_ids = self.remembered.get(msg.shard_id)
        if entity_ids is None:
            entity_ids = self.remembered[msg.shard_id] = set()
        if msg.entity_id not in entity_ids:
            entity_ids.add(msg.entity_id)
            self.changed()

    def on_entity_stopped(self, msg: EntityStopped) -> None:
        entity_ids = self.remembered.get(msg.shard_id)
        if entity_ids is not None and msg.entity_id in entity_ids:
            entity_ids.discard(msg.entity_id)
            if not entity_ids:
                del self.remembered[msg.shard_id]
            self.changed()

    def on_get_state(self, msg: GetCoordinatorState) -> None:
        allocations = self.table.allocations()
        msg.reply_to.tell(
            CoordinatorState(
                type_name=self.type_name,
                active=self.phase == _ACTIVE,
                regions=tuple(
                    (key, tuple(sorted(allocations[key]))) for key in sorted(allocations)
                ),
                proxies=tuple(sorted(self.proxies)),
                in_handoff=tuple(sorted(self.handoffs)),
            )
        )

    handlers: Final[dict[type, Callable[[_Coordinator, Any], None]]] = {
        RegisterRegion: on_register_region,
        RegisterProxy: on_register_proxy,
        GetShardHome: on_get_shard_home,
        ShardStarted: on_shard_started,
        BeginHandoffAck: on_begin_handoff_ack,
        ShardStopped: on_shard_stopped,
        GracefulShutdownRequest: on_graceful_shutdown,
        RegionStopped: on_region_stopped,
        TopologySnapshot: on_topology,
        EntityStarted: on_entity_started,
        EntityStopped: on_entity_stopped,
        CoordinatorHandover: on_handover,
        CoordinatorHandoverAck: on_handover_ack,
        GetCoordinatorState: on_get_state,
        _Tick: on_tick,
        _Rebalance: on_rebalance,
        _Publish: on_publish,
        _GraceOver: check_collected,
        _PredecessorGone: on_predecessor_gone,
        _RemoveNode: remove_node,
        ShardProgress: on_shard_progress,
        _PromotionDue: promoted,
    }


_WHILE_RETIRED = frozenset({_Tick, CoordinatorHandoverAck, CoordinatorHandover, TopologySnapshot})


def _key(ref: RefLike) -> str:
    """A region's key in the table: its actor address."""
    return str(getattr(ref, "address", ref))


def _remembered_to_wire(remembered: dict[int, set[str]]) -> list[list[Any]]:
    return [[shard_id, sorted(ids)] for shard_id, ids in sorted(remembered.items()) if ids]


def _remembered_from_wire(data: object) -> dict[int, set[str]]:
    if not isinstance(data, list | tuple):
        raise ShardingError(f"remembered entities must be a list, got {type(data).__name__}")
    result: dict[int, set[str]] = {}
    for entry in data:
        shard_id, ids = entry
        if type(shard_id) is not int or not all(type(i) is str for i in ids):
            raise ShardingError(f"malformed remembered entities entry {entry!r:.80}")
        result[shard_id] = set(ids)
    return result
