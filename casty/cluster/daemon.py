"""The topology actor (``/system/cluster``): one actor that owns this node's cluster state.

It wires the pure algorithms of `casty.cluster` to the network and the clock, exactly as the
virtual-time model in ``tests/cluster/test_membership_timing.py`` does:

* **joining**: Akka's seed node process (`casty.cluster.seeds`): ask the seeds, join through
  the first member that answers, or found the cluster when this node is the first seed;
* every **heartbeat interval**: heartbeat requests to the nodes this node monitors on the
  bounded ring (`casty.cluster.heartbeat`); answers feed the phi accrual detectors;
* every **gossip interval**: record the detectors' verdicts in the reachability table, run the
  split brain resolver (`casty.cluster.downing`), make the leader's moves at convergence
  (`casty.cluster.gossip.leader_actions`), forget old tombstones, and gossip: the full state
  to peers that have not seen this version, otherwise one status digest;
* on **every state change**: publish each membership event once on the event stream
  (`casty.cluster.events.diff_events`), push a `TopologySnapshot` to subscribers when it
  changed, quarantine removed nodes in remoting, and notice this node's own fate (exiting:
  run the exit hooks; downed or removed: stop serving).

A node that is downed, or removed, publishes its own `MemberRemoved` and goes silent: it
answers no heartbeat and no gossip, so the others see it unreachable and remove it. Malformed
messages from peers are dropped and logged at a calm rate.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, final

from casty._calm_log import CalmLog
from casty.abc import Address, Discovery
from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.actors.events import EventStreamSubscribe
from casty.actors.ref import ActorRef
from casty.actors.signals import Terminated
from casty.actors.supervision import SupervisorStrategy
from casty.actors.timers import TimerScheduler
from casty.clock import Clock
from casty.cluster.config import ClusterConfig
from casty.cluster.downing import DowningView, SplitBrainResolver
from casty.cluster.events import MemberRemoved, TopologySnapshot, diff_events, topology_snapshot
from casty.cluster.facade import Cluster
from casty.cluster.failure_detector import FailureDetectorRegistry, PhiAccrualFailureDetector
from casty.cluster.gossip import (
    Gossip,
    GossipOutcome,
    GossipStatus,
    JoinOutcome,
    StatusAction,
    leader_actions,
    receive_gossip,
    select_gossip_targets,
    status_action,
)
from casty.cluster.heartbeat import HeartbeatSender, reap_unreachable
from casty.cluster.member import Member, MemberStatus, UniqueAddress
from casty.cluster.protocol import (
    PROTOCOL_VERSION,
    GossipEnvelope,
    GossipStatusEnvelope,
    Heartbeat,
    HeartbeatResponse,
    InitJoin,
    InitJoinAck,
    InitJoinNack,
    InitJoinRefused,
    Join,
    JoinDenied,
    JoinRetry,
    LeaveCluster,
    SetShardAllocations,
    SubscribeClusterEvents,
    SubscribeTopology,
    UnsubscribeTopology,
    Welcome,
    address_from_wire,
    address_to_wire,
    node_from_wire,
    node_to_wire,
)
from casty.cluster.seeds import SeedProcess
from casty.errors import CastyError, DecodeError, HandshakeFailed, JoinRefused

__all__ = ["TopologySettings", "topology_behavior"]

log = logging.getLogger("casty.cluster")

_S = MemberStatus
#: A member in one of these statuses answers InitJoinAck: it can admit joiners. A joining member
#: counts, so that a restarting first seed never mistakes a cluster in formation for none.
_ADMITTING = frozenset({_S.JOINING, _S.WEAKLY_UP, _S.UP, _S.LEAVING})

#: Gossip rounds between a graceful removal and the quarantine of the removed node.
_QUARANTINE_ROUNDS = 4

# Phases of the topology actor.
_SEEKING, _WELCOMING, _MEMBER, _STOPPED = range(4)


@dataclass(frozen=True, slots=True)
class TopologySettings:
    """What the topology actor needs from its `ClusteredActorSystem`.

    Attributes:
        self_node: this node's address and incarnation.
        node_id: this node's operator-given name.
        roles: this node's roles.
        system_name: the actor system's name (joiners of another name are refused).
        config: the cluster settings.
        discovery: where seeds come from; ``None`` founds a one-node cluster at once.
        clock: the system's clock (timers, detectors, resolver, tombstones).
        send: ``send(address, message)`` tells the topology actor of the node at ``address``.
        quarantine: ``quarantine(node, reason)`` makes remoting refuse ``node`` for good and
            fire remote death watch on it.
        probe: ``await probe(address)`` connects to a seed; it raises `HandshakeFailed` when
            the seed refuses this node (another system name, protocol version or serializer,
            a TLS failure), which drops that seed from the search; the join fails with
            `JoinRefused` once no seed is left (`SeedProcess.refused_by_all`).
        cluster: the `Cluster` view this actor keeps up to date.
    """

    self_node: UniqueAddress
    node_id: str
    roles: frozenset[str]
    system_name: str
    config: ClusterConfig
    discovery: Discovery | None
    clock: Clock
    send: Callable[[Address, object], None]
    quarantine: Callable[[UniqueAddress, str], None]
    probe: Callable[[Address], Awaitable[object]]
    cluster: Cluster


# -- the actor's own messages ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _GossipTick:
    pass


@dataclass(frozen=True, slots=True)
class _HeartbeatTick:
    pass


@dataclass(frozen=True, slots=True)
class _JoinTick:
    pass


@dataclass(frozen=True, slots=True)
class _WelcomeTimeout:
    pass


@dataclass(frozen=True, slots=True)
class _SeedsResolved:
    seeds: frozenset[Address]
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class _SeedProbed:
    seed: Address
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class _ExitHooksDone:
    pass


@dataclass(frozen=True, slots=True)
class _Quarantine:
    node: UniqueAddress


_GOSSIP_TICK = _GossipTick()
_HEARTBEAT_TICK = _HeartbeatTick()
_JOIN_TICK = _JoinTick()


def topology_behavior(settings: TopologySettings) -> Behavior[Any]:
    """The topology actor's behavior (spawned once per node at ``/system/cluster``)."""

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
            daemon = _Topology(ctx, timers, settings)
            daemon.start()
            return Behaviors.receive(daemon.receive)

        return Behaviors.with_timers(with_timers)

    # A bug met while handling one message must not throw the cluster state away.
    return Behaviors.supervise(Behaviors.setup(setup), SupervisorStrategy.resume())


@final
class _Topology:
    """The state and handlers of the topology actor (see the module docstring)."""

    def __init__(
        self, ctx: ActorContext[Any], timers: TimerScheduler[Any], settings: TopologySettings
    ) -> None:
        self.ctx = ctx
        self.timers = timers
        self.settings = settings
        self.me = settings.self_node
        self.cluster = settings.cluster
        self.counters = settings.cluster.counters
        self.config = settings.config
        clock = settings.clock
        self.clock = clock
        fd = settings.config.failure_detector
        self.registry: FailureDetectorRegistry[UniqueAddress] = FailureDetectorRegistry(
            lambda: PhiAccrualFailureDetector(
                threshold=fd.threshold,
                max_sample_size=fd.max_sample_size,
                min_std_deviation=fd.min_std_deviation,
                acceptable_heartbeat_pause=fd.acceptable_heartbeat_pause,
                first_heartbeat_estimate=fd.heartbeat_interval,
                clock=clock.monotonic,
            )
        )
        self.heartbeats = HeartbeatSender(
            self.me,
            self.registry,
            monitored_by_nr_of_members=fd.monitored_by_nr_of_members,
            expected_response_after=fd.expected_response_after,
            clock=clock.monotonic,
        )
        downing = settings.config.downing
        self.resolver = SplitBrainResolver(
            downing.strategy,
            stable_after=downing.stable_after,
            down_all_when_unstable=downing.down_all_when_unstable,
            clock=clock.monotonic,
        )
        self.rng = random.Random()
        self.calm = CalmLog(log, clock.monotonic, settings.config.join.log_interval)
        self.state = Gossip()
        self.phase = _SEEKING
        self.seeds = SeedProcess(self.me.address, settings.config.join, clock.monotonic())
        self.subscribers: set[ActorRef[TopologySnapshot]] = set()
        self.snapshot = topology_snapshot(self.state, self.me)
        self.probing: set[Address] = set()
        self.exit_hooks_started = False
        self.exit_hooks_done = False
        self.wire_of: tuple[Gossip, Any] | None = None
        self.handlers: dict[type, Callable[[Any], None]] = {
            _GossipTick: self.on_gossip_tick,
            _HeartbeatTick: self.on_heartbeat_tick,
            _JoinTick: self.on_join_tick,
            _WelcomeTimeout: self.on_welcome_timeout,
            _SeedsResolved: self.on_seeds_resolved,
            _ExitHooksDone: self.on_exit_hooks_done,
            LeaveCluster: self.on_leave,
            SubscribeTopology: self.on_subscribe,
            SubscribeClusterEvents: self.on_subscribe_events,
            UnsubscribeTopology: self.on_unsubscribe,
            Terminated: self.on_terminated,
            InitJoin: self.on_init_join,
            InitJoinAck: self.on_init_join_ack,
            InitJoinNack: self.on_init_join_nack,
            InitJoinRefused: self.on_refused,
            Join: self.on_join,
            Welcome: self.on_welcome,
            JoinRetry: self.on_join_retry,
            JoinDenied: self.on_refused,
            GossipEnvelope: self.on_gossip,
            GossipStatusEnvelope: self.on_gossip_status,
            Heartbeat: self.on_heartbeat,
            HeartbeatResponse: self.on_heartbeat_response,
            _SeedProbed: self.on_seed_probed,
            _Quarantine: self.on_quarantine,
            SetShardAllocations: self.on_shard_allocations,
        }
        self.shard_allocations: dict[str, Mapping[int, Address]] = {}

    # -- dispatch ----------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster._attach(self.ctx.self)
        if self.settings.discovery is None:
            self.found()
        else:
            self.resolve_seeds()

    def receive(self, ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        handler = self.handlers.get(type(msg))
        if handler is None:
            return Behaviors.unhandled()
        try:
            handler(msg)
        except DecodeError as exc:
            self.counters.dropped += 1
            self.calm.warning(
                f"drop:{type(msg).__name__}",
                "node %s: dropped a malformed %s: %s",
                self.me,
                type(msg).__name__,
                exc,
            )
        return Behaviors.same()

    # -- sending -----------------------------------------------------------------------------

    def send(self, address: Address, message: object) -> None:
        self.settings.send(address, message)

    def gossip_wire(self) -> Any:
        cached = self.wire_of
        if cached is None or cached[0] is not self.state:
            cached = self.wire_of = (self.state, self.state.to_wire())
        return cached[1]

    def send_gossip(self, to: UniqueAddress) -> None:
        self.counters.gossip_sent += 1
        self.send(
            to.address, GossipEnvelope(node_to_wire(self.me), node_to_wire(to), self.gossip_wire())
        )

    def send_status(self, to: UniqueAddress) -> None:
        self.counters.status_sent += 1
        status = GossipStatus.of(self.state, self.me).to_wire()
        self.send(to.address, GossipStatusEnvelope(node_to_wire(to), status))

    # -- state changes -----------------------------------------------------------------------

    def set_state(self, new: Gossip) -> None:
        """Adopt ``new``: publish its events once, and react to what changed."""
        old = self.state
        if new is old:
            return
        self.state = new
        me = self.me
        for event in diff_events(old, new, me):
            self.ctx.system.publish(event)
            if isinstance(event, MemberRemoved) and event.member.unique_address != me:
                self.removed(event)
        members = [m.unique_address for m in new.members]
        unreachable = new.reachability_excluding_downed_observers().all_unreachable_or_terminated()
        self.heartbeats.update(members, unreachable)
        self.resolver.update(DowningView.from_gossip(new, me))
        self.push_snapshot()
        myself = new.member(me)
        if myself is None:
            if old.has_member(me):
                self.stop(downed=False, reason="removed from the cluster")
        elif myself.status is _S.DOWN:
            self.publish_own_removal(myself)
            self.stop(downed=True, reason="downed by the cluster")
        elif myself.status is _S.EXITING and not self.exit_hooks_started:
            self.run_exit_hooks()

    def removed(self, event: MemberRemoved) -> None:
        """Quarantine a removed member in remoting (refused for good, its watches fire).

        A member that exited gracefully is still running and must first hear of its removal
        (the leader sends it the state once), so its quarantine waits a few gossip rounds; a
        downed member is unreachable, and is quarantined at once.
        """
        node = event.member.unique_address
        if event.previous_status is _S.DOWN:
            self.settings.quarantine(node, "downed and removed from the cluster")
        else:
            delay = _QUARANTINE_ROUNDS * self.config.gossip.interval
            self.timers.start_single_timer(("quarantine", node), _Quarantine(node), delay)

    def on_quarantine(self, msg: _Quarantine) -> None:
        self.settings.quarantine(msg.node, "removed from the cluster")

    def on_shard_allocations(self, msg: SetShardAllocations) -> None:
        self.shard_allocations[msg.type_name] = dict(msg.allocations)
        self.push_snapshot()

    def push_snapshot(self) -> None:
        snapshot = topology_snapshot(self.state, self.me, self.shard_allocations)
        changed = snapshot != self.snapshot
        self.snapshot = snapshot
        self.cluster._update(self.state, snapshot)
        if changed:
            for subscriber in self.subscribers:
                subscriber.tell(snapshot)

    def publish_own_removal(self, member: Member) -> None:
        removed = replace(member, status=_S.REMOVED)
        self.ctx.system.publish(MemberRemoved(removed, member.status))

    def stop(self, *, downed: bool, reason: str) -> None:
        """Stop serving: no more timers, heartbeats or gossip; final."""
        if self.phase == _STOPPED:
            return
        self.phase = _STOPPED
        self.timers.cancel_all()
        if downed:
            log.warning("node %s %s: it stops serving", self.me, reason)
        else:
            log.info("node %s %s", self.me, reason)
        self.cluster._stopped(downed=downed)

    # -- joining -----------------------------------------------------------------------------

    def resolve_seeds(self) -> None:
        discovery = self.settings.discovery
        assert discovery is not None

        def resolved(seeds: frozenset[Address] | None, error: BaseException | None) -> Any:
            return _SeedsResolved(seeds or frozenset(), error)

        self.ctx.pipe_to_self(discovery.seeds(), resolved)

    def on_seeds_resolved(self, msg: _SeedsResolved) -> None:
        if self.phase != _SEEKING:
            return
        if msg.error is not None:
            self.calm.warning(
                "discovery",
                "node %s: seed discovery failed (%s: %s); retrying",
                self.me,
                type(msg.error).__name__,
                msg.error,
            )
        else:
            self.seeds.resolved(msg.seeds)
        self.seek_round()

    def seek_round(self) -> None:
        now = self.clock.monotonic()
        plan = self.seeds.plan(now)
        if plan.found:
            self.found()
            return
        if not plan.ask:
            self.calm.warning(
                "no-seeds",
                "node %s: no seed nodes known yet (the seed list or discovery gave none); "
                "retrying with backoff",
                self.me,
            )
        else:
            message = InitJoin(
                address_to_wire(self.me.address),
                self.settings.system_name,
                PROTOCOL_VERSION,
                tuple(sorted(map(address_to_wire, self.seeds.known_seeds))),
            )
            for seed in sorted(plan.ask):
                self.send(seed, message)
                self.probe(seed)
            # By seed_node_timeout a healthy search has ended: say why this one goes on.
            waited = now - self.seeds.started_at
            if waited >= self.config.join.seed_node_timeout:
                self.calm.warning(
                    "still-joining",
                    "node %s: still joining after %.0f s: %s; asking again in %.2f s",
                    self.me,
                    waited,
                    self.seeds.explain(now),
                    plan.next_round_in,
                )
        self.timers.start_single_timer("join", _JOIN_TICK, plan.next_round_in)

    def on_join_tick(self, msg: _JoinTick) -> None:
        if self.phase == _SEEKING:
            self.resolve_seeds()

    def found(self) -> None:
        """Found a new cluster with this node as its only member."""
        log.info("node %s founds a new cluster", self.me)
        member = Member(self.me, self.settings.node_id, _S.JOINING, self.settings.roles)
        founded, _ = Gossip().add_joining(member, self.me)
        self.become_member(founded)

    def become_member(self, state: Gossip) -> None:
        self.phase = _MEMBER
        self.timers.cancel("join")
        self.timers.cancel("welcome")
        self.set_state(state)
        if self.phase != _MEMBER:
            return
        self.leader_round()
        interval = self.config.gossip.interval
        # Spread the rounds of nodes that started together over the interval.
        self.timers.start_single_timer("gossip-first", _GOSSIP_TICK, self.rng.random() * interval)
        self.timers.start_single_timer(
            "heartbeat-first",
            _HEARTBEAT_TICK,
            self.rng.random() * self.config.failure_detector.heartbeat_interval,
        )

    def on_init_join(self, msg: InitJoin) -> None:
        sender = address_from_wire(msg.sender)
        refusal = self.refusal(msg.system_name, msg.protocol_version)
        if refusal is not None:
            log.warning("node %s refused node %s: %s", self.me, sender, refusal)
            self.send(sender, InitJoinRefused(address_to_wire(self.me.address), refusal))
            return
        if self.phase == _STOPPED:
            return
        seeds = [address_from_wire(s) for s in _strings(msg.seeds)]
        me = self.state.member(self.me)
        if self.phase == _MEMBER and me is not None and me.status in _ADMITTING:
            self.send(sender, InitJoinAck(address_to_wire(self.me.address)))
            return
        if self.phase == _SEEKING:
            self.seeds.learn(sender, seeds)
        known = tuple(sorted(map(address_to_wire, self.seeds.known_seeds)))
        self.send(sender, InitJoinNack(address_to_wire(self.me.address), known))

    def refusal(self, system_name: object, version: object) -> str | None:
        # Sent to the joiner and logged here: worded to read right on both sides.
        if system_name != self.settings.system_name:
            return (
                f"the joiner belongs to actor system {system_name!r}, the cluster to "
                f"{self.settings.system_name!r}"
            )
        if version != PROTOCOL_VERSION:
            return (
                f"the joiner speaks cluster protocol version {version!r}, the cluster speaks "
                f"{PROTOCOL_VERSION}"
            )
        return None

    def on_init_join_nack(self, msg: InitJoinNack) -> None:
        sender = address_from_wire(msg.sender)
        seeds = [address_from_wire(s) for s in _strings(msg.seeds)]
        if self.phase != _SEEKING:
            return
        now = self.clock.monotonic()
        self.seeds.nack(sender, seeds, now)
        if self.seeds.should_found(now):
            self.found()

    def on_init_join_ack(self, msg: InitJoinAck) -> None:
        sender = address_from_wire(msg.sender)
        if self.phase != _SEEKING:
            return
        self.phase = _WELCOMING
        self.timers.cancel("join")
        log.info("node %s joins the cluster through %s", self.me, sender)
        self.send(
            sender,
            Join(
                node_to_wire(self.me),
                self.settings.node_id,
                tuple(sorted(self.settings.roles)),
                self.settings.system_name,
                PROTOCOL_VERSION,
            ),
        )
        self.timers.start_single_timer(
            "welcome", _WelcomeTimeout(), self.config.join.retry_unsuccessful_join_after
        )

    def on_welcome_timeout(self, msg: _WelcomeTimeout) -> None:
        if self.phase == _WELCOMING:
            self.calm.warning("welcome", "node %s: no welcome after joining; retrying", self.me)
            self.phase = _SEEKING
            self.resolve_seeds()

    def on_join_retry(self, msg: JoinRetry) -> None:
        if node_from_wire(msg.receiver) != self.me or self.phase != _WELCOMING:
            return
        self.calm.warning("join-retry", "node %s: join postponed: %s", self.me, str(msg.reason))
        self.phase = _SEEKING
        self.timers.cancel("welcome")
        self.timers.start_single_timer("join", _JOIN_TICK, self.config.join.retry_interval)

    def on_refused(self, msg: InitJoinRefused | JoinDenied) -> None:
        # A refusal by a member of this very system (the handshake passed) speaks for its
        # cluster: every member would answer the same, and founding a cluster of our own
        # beside it would split the system, so the join fails at once.
        if isinstance(msg, JoinDenied) and node_from_wire(msg.receiver) != self.me:
            return
        if self.phase not in (_SEEKING, _WELCOMING):
            return
        self.fail_join(f"seed {msg.sender} refused this node: {msg.reason}")

    def probe(self, seed: Address) -> None:
        """Connect to ``seed`` in the background, to learn whether it refuses this node."""
        if seed in self.probing:
            return
        self.probing.add(seed)

        def probed(_value: object, error: BaseException | None) -> _SeedProbed:
            return _SeedProbed(seed, error)

        self.ctx.pipe_to_self(self.settings.probe(seed), probed)

    def on_seed_probed(self, msg: _SeedProbed) -> None:
        seed, error = msg.seed, msg.error
        self.probing.discard(seed)
        if self.phase not in (_SEEKING, _WELCOMING):
            return
        if error is None:
            self.seeds.reachable(seed)
            return
        if isinstance(error, HandshakeFailed):
            # A seed of another system (or serializer, or TLS identity): skip it, as Akka
            # drops a foreign seed, and go on with the others.
            detail = str(error).removeprefix(f"{seed} refused the handshake: ")
            reason = (
                f"refused the handshake of this node (actor system "
                f"{self.settings.system_name!r}): {detail}"
            )
            if self.seeds.refuse(seed, reason):
                log.warning("node %s: skipping seed %s, which %s", self.me, seed, reason)
        else:
            self.seeds.unreachable(seed)
        if self.seeds.refused_by_all():
            refused = [f"seed {a} {why}" for a, why in sorted(self.seeds.refusals.items())]
            unreachable = [f"seed {a}: unreachable" for a in sorted(self.seeds.known_seeds)]
            self.fail_join("no seed can let it in: " + "; ".join(refused + unreachable))

    def fail_join(self, reason: str) -> None:
        log.error("node %s cannot join the cluster: %s", self.me, reason)
        self.phase = _STOPPED
        self.timers.cancel_all()
        self.cluster._fail(JoinRefused(reason))

    def on_join(self, msg: Join) -> None:
        node = node_from_wire(msg.node)
        refusal = self.refusal(msg.system_name, msg.protocol_version)
        here = address_to_wire(self.me.address)
        if refusal is not None:
            log.warning("node %s refused node %s: %s", self.me, node, refusal)
            self.send(node.address, JoinDenied(here, msg.node, refusal))
            return
        if self.phase == _STOPPED:
            return
        if self.phase != _MEMBER:
            self.send(node.address, JoinRetry(here, msg.node, "not a member yet"))
            return
        try:
            member = Member(node, _string(msg.node_id), _S.JOINING, frozenset(_strings(msg.roles)))
        except CastyError as exc:
            raise DecodeError(f"bad join request: {exc}") from exc
        state, outcome = self.state.add_joining(member, self.me)
        self.set_state(state)
        if outcome in (JoinOutcome.ADDED, JoinOutcome.ALREADY_MEMBER):
            if outcome is JoinOutcome.ADDED:
                log.info("node %s admitted %s (%s)", self.me, node, member.node_id)
            self.counters.gossip_sent += 1
            self.send(node.address, Welcome(node_to_wire(self.me), msg.node, self.gossip_wire()))
        elif outcome is JoinOutcome.REFUSED_REMOVED:
            reason = f"incarnation {node} was removed from the cluster; restart the node"
            log.warning("node %s refused node %s: %s", self.me, node, reason)
            self.send(node.address, JoinDenied(here, msg.node, reason))
        elif outcome is JoinOutcome.REPLACING:
            reason = "an older incarnation at this address is being removed"
            self.send(node.address, JoinRetry(here, msg.node, reason))
        else:
            self.send(node.address, JoinRetry(here, msg.node, "this node cannot admit members"))

    def on_welcome(self, msg: Welcome) -> None:
        self.adopt(node_from_wire(msg.sender), node_from_wire(msg.receiver), msg.gossip)

    # -- gossip ------------------------------------------------------------------------------

    def on_gossip(self, msg: GossipEnvelope) -> None:
        self.adopt(node_from_wire(msg.sender), node_from_wire(msg.receiver), msg.gossip)

    def adopt(self, sender: UniqueAddress, receiver: UniqueAddress, wire: Any) -> None:
        """Handle a full state from ``sender`` (a welcome or a gossip)."""
        if receiver != self.me or self.phase == _STOPPED:
            return
        remote = Gossip.from_wire(wire)
        self.counters.gossip_received += 1
        if self.phase != _MEMBER:
            # A state naming this node is a welcome, whoever sends it (the welcome itself may
            # be late or lost).
            if remote.has_member(self.me) and not remote.is_removed(self.me):
                result = receive_gossip(Gossip(), remote, self.me)
                self.become_member(result.gossip)
            return
        if self.state.is_removed(sender):
            self.send_gossip(sender)  # it missed its removal: this tells it
            return
        # The state that makes this node exiting is not marked seen either: its exit hooks
        # start only once it is adopted, and the leader removes an exiting member it sees.
        incoming = remote.member(self.me)
        exiting = incoming is not None and incoming.status is _S.EXITING
        result = receive_gossip(
            self.state,
            remote,
            self.me,
            from_node=sender,
            mark_seen=not (self.withholding or (exiting and self.exit_pending)),
        )
        if result.outcome is GossipOutcome.SELF_REMOVED:
            member = self.state.member(self.me)
            if member is not None:
                self.publish_own_removal(member)
            self.stop(downed=False, reason="removed from the cluster")
            return
        self.set_state(result.gossip)
        if result.talkback and self.phase == _MEMBER:
            self.send_gossip(sender)

    def on_gossip_status(self, msg: GossipStatusEnvelope) -> None:
        receiver = node_from_wire(msg.receiver)
        status = GossipStatus.from_wire(msg.status)
        if receiver != self.me or self.phase != _MEMBER:
            return
        self.counters.status_received += 1
        sender = status.from_node
        if self.state.is_removed(sender):
            self.send_gossip(sender)
            return
        action = status_action(self.state, status)
        if action is StatusAction.SEND_GOSSIP:
            self.send_gossip(sender)
        elif action is StatusAction.SEND_STATUS:
            self.send_status(sender)

    @property
    def withholding(self) -> bool:
        """Whether this node withholds its seen mark: exiting with hooks still running, so
        that the leader does not remove it before its work is handed off."""
        return self.exit_hooks_started and not self.exit_hooks_done

    @property
    def exit_pending(self) -> bool:
        """Whether exit hooks are registered and have not returned yet."""
        return not self.exit_hooks_done and bool(self.cluster._exit_hook_list)

    def on_gossip_tick(self, msg: _GossipTick) -> None:
        if self.phase != _MEMBER:
            return
        self.timers.start_single_timer("gossip", _GOSSIP_TICK, self.config.gossip.interval)
        if not self.withholding:
            self.set_state(reap_unreachable(self.state, self.me, self.registry.is_available))
        if not self.resolve_split_brain():
            return
        self.leader_round()
        if self.phase != _MEMBER:
            return
        wall = self.clock.time_ms() / 1000.0
        self.set_state(self.state.prune_tombstones(wall - self.config.gossip.tombstone_ttl))
        self.gossip_round()

    def resolve_split_brain(self) -> bool:
        """Carry out a resolver decision, if one is due; ``False`` when this node went down."""
        decision = self.resolver.decide()
        if decision is None:
            return True
        strategy = self.config.downing.strategy
        if decision.down_self:
            self.counters.downing_decisions += 1
            log.warning(
                "node %s: split brain resolver (%r) downs this node's side (%s): %s",
                self.me,
                strategy,
                decision.kind.value,
                ", ".join(map(str, sorted(decision.down))),
            )
            self.set_state(self.state.mark_down(self.me, self.me))
            return False
        if self.state.leader(self.me) == self.me:
            self.counters.downing_decisions += 1
            log.warning(
                "node %s: split brain resolver (%r) downs %s (%s)",
                self.me,
                strategy,
                ", ".join(map(str, sorted(decision.down))),
                decision.kind.value,
            )
            state = self.state
            for node in sorted(decision.down):
                state = state.mark_down(node, self.me)
            self.set_state(state)
        return self.phase == _MEMBER

    def leader_round(self) -> None:
        state = self.state
        me = state.member(self.me)
        if me is not None and me.status is _S.EXITING and self.withholding:
            return  # alone and exiting: its own removal waits for the exit hooks
        wall = self.clock.time_ms() / 1000.0
        new, _ = leader_actions(state, self.me, now=wall)
        if new is state:
            return
        # Members that exited gracefully are still running: each gets the new state once, so
        # that it learns of its removal and stops. Downed ones are unreachable (and
        # quarantined at once), so they get nothing.
        exited = [
            m.unique_address
            for m in state.members
            if not new.has_member(m.unique_address)
            and m.status is not _S.DOWN
            and m.unique_address != self.me
        ]
        mine = new.member(self.me)
        if mine is not None and mine.status is _S.EXITING and self.exit_pending:
            # This leader made itself exiting: it has not seen that state until its exit hooks
            # return, or the next leader would remove it while they run.
            new = new.without_seen(self.me)
        self.set_state(new)
        for node in exited:
            self.send_gossip(node)

    def gossip_round(self) -> None:
        state = self.state
        config = self.config.gossip
        spreading = len(state.seen) < len(state.members)
        targets = select_gossip_targets(
            state,
            self.me,
            config.fanout if spreading else 1,
            self.rng,
            different_view_probability=config.different_view_probability,
        )
        for target in targets:
            if state.seen_by(target):
                self.send_status(target)
            else:
                self.send_gossip(target)

    # -- heartbeats --------------------------------------------------------------------------

    def on_heartbeat_tick(self, msg: _HeartbeatTick) -> None:
        if self.phase != _MEMBER:
            return
        self.timers.start_single_timer(
            "heartbeat", _HEARTBEAT_TICK, self.config.failure_detector.heartbeat_interval
        )
        me = node_to_wire(self.me)
        for node in sorted(self.heartbeats.tick()):
            self.counters.heartbeats_sent += 1
            self.send(node.address, Heartbeat(me, node_to_wire(node)))

    def on_heartbeat(self, msg: Heartbeat) -> None:
        sender = node_from_wire(msg.sender)
        if node_from_wire(msg.receiver) != self.me or self.phase == _STOPPED:
            return
        self.send(sender.address, HeartbeatResponse(node_to_wire(self.me), msg.sender))

    def on_heartbeat_response(self, msg: HeartbeatResponse) -> None:
        sender = node_from_wire(msg.sender)
        if node_from_wire(msg.receiver) != self.me or self.phase != _MEMBER:
            return
        self.heartbeats.heartbeat_response(sender)

    # -- leaving -----------------------------------------------------------------------------

    def on_leave(self, msg: LeaveCluster) -> None:
        if self.phase == _MEMBER:
            log.info("node %s leaves the cluster", self.me)
            self.set_state(self.state.mark_leaving(self.me, self.me))
            self.leader_round()
        elif self.phase in (_SEEKING, _WELCOMING):
            self.stop(downed=False, reason="stopped joining (left before it was admitted)")

    def run_exit_hooks(self) -> None:
        self.exit_hooks_started = True
        hooks = self.cluster._exit_hook_list
        if not hooks:
            self.exit_hooks_done = True
            return
        timeout = self.config.leave_timeout

        async def run() -> None:
            try:
                async with asyncio.timeout(timeout):
                    for hook in hooks:
                        try:
                            await hook()
                        except Exception:
                            log.exception("node %s: exit hook %r failed", self.me, hook)
            except TimeoutError:
                log.warning("node %s: exit hooks did not finish within %.1f s", self.me, timeout)

        self.ctx.pipe_to_self(run(), lambda _value, _error: _ExitHooksDone())

    def on_exit_hooks_done(self, msg: _ExitHooksDone) -> None:
        self.exit_hooks_done = True
        if self.phase != _MEMBER:
            return
        # Confirm the exit: mark the state seen and tell the leader, who then removes us.
        self.set_state(self.state.with_seen(self.me))
        leader = self.state.leader(self.me)
        if leader is not None and leader != self.me:
            self.send_gossip(leader)
        else:
            self.leader_round()

    # -- topology subscribers ----------------------------------------------------------------

    def on_subscribe(self, msg: SubscribeTopology) -> None:
        subscriber = msg.subscriber
        if subscriber not in self.subscribers:
            self.subscribers.add(subscriber)
            self.ctx.watch(subscriber)
        subscriber.tell(self.snapshot)

    def on_subscribe_events(self, msg: SubscribeClusterEvents) -> None:
        # This actor publishes every event on the event stream, and tells it this subscription
        # first: the stream (FIFO per sender) thus routes every event published from now on,
        # and the current state, sent below, covers every earlier one.
        subscriber = msg.subscriber
        for kind in msg.event_types:
            self.ctx.system.event_stream.tell(EventStreamSubscribe(kind, subscriber))
        if msg.initial_state_as_events:
            for event in diff_events(Gossip(), self.state, self.me):
                if isinstance(event, msg.event_types):
                    subscriber.tell(event)

    def on_unsubscribe(self, msg: UnsubscribeTopology) -> None:
        if msg.subscriber in self.subscribers:
            self.subscribers.discard(msg.subscriber)
            self.ctx.unwatch(msg.subscriber)

    def on_terminated(self, msg: Terminated) -> None:
        self.subscribers.discard(msg.ref)


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"expected a string, got {value!r:.80}")
    return value


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, tuple | list):
        raise DecodeError(f"expected a list of strings, got {value!r:.80}")
    return tuple(_string(item) for item in value)
