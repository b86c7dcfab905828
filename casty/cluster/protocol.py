"""The messages topology actors exchange, and the ones local code sends its topology actor.

Wire messages are frozen dataclasses of plain fields (strings, ints, tuples, the gossip's own
plain wire form), so any serializer carries them and a node can check every field of what a
peer sent before acting on it (`node_from_wire`, `address_from_wire`). A node is written as
``(host, port, incarnation)``; a network address as ``"host:port"``. Every message names its
receiver's incarnation where it matters, so a message meant for a node's previous run is
ignored by its successor at the same address. New fields get defaults, so that an older node
can read a newer message. `PROTOCOL_VERSION` is checked at join: nodes of another version are
refused.

The join exchange follows Akka's seed node process:

    joiner                      seed
      ── InitJoin ───────────────►      "do you belong to a cluster?"
      ◄──────── InitJoinAck ───────      yes (a member that is up)
      ◄──────── InitJoinNack ──────      no (alive, not a member yet): carries its seeds
      ◄──────── InitJoinRefused ───      other system name or protocol version
      ── Join ───────────────────►
      ◄──────── Welcome ───────────      the gossip state, with the joiner as ``joining``
      ◄──────── JoinRetry ─────────      not now (an older incarnation is being removed)
      ◄──────── JoinDenied ────────      never (this incarnation was removed)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from casty.abc import Address
from casty.actors.ref import ActorRef
from casty.cluster.events import ClusterDomainEvent, TopologySnapshot
from casty.cluster.member import MAX_INCARNATION, UniqueAddress
from casty.errors import DecodeError

__all__ = [
    "PROTOCOL_VERSION",
    "GossipEnvelope",
    "GossipStatusEnvelope",
    "Heartbeat",
    "HeartbeatResponse",
    "InitJoin",
    "InitJoinAck",
    "InitJoinNack",
    "InitJoinRefused",
    "Join",
    "JoinDenied",
    "JoinRetry",
    "LeaveCluster",
    "NodeWire",
    "SetShardAllocations",
    "SubscribeClusterEvents",
    "SubscribeTopology",
    "UnsubscribeTopology",
    "Welcome",
    "address_from_wire",
    "address_to_wire",
    "node_from_wire",
    "node_to_wire",
]

#: The cluster protocol version; a node refuses joiners that speak another one.
PROTOCOL_VERSION = 1

#: A node on the wire: ``(host, port, incarnation)``.
NodeWire = tuple[str, int, int]


def node_to_wire(node: UniqueAddress) -> NodeWire:
    """``node`` as ``(host, port, incarnation)``."""
    return (node.address.host, node.address.port, node.incarnation)


def node_from_wire(value: object) -> UniqueAddress:
    """The inverse of `node_to_wire`, checking every field.

    Raises:
        DecodeError: not a ``(host, port, incarnation)`` triple with a non-empty host, a port in
            0..65535 and an incarnation in ``[0, 2**64)``.
    """
    if not isinstance(value, tuple | list) or len(value) != 3:
        raise DecodeError(f"expected a (host, port, incarnation) node, got {value!r:.80}")
    host, port, incarnation = value
    if not isinstance(host, str) or not host:
        raise DecodeError(f"node host must be a non-empty string, got {host!r:.80}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise DecodeError(f"node port must be an int in 0..65535, got {port!r:.80}")
    if (
        isinstance(incarnation, bool)
        or not isinstance(incarnation, int)
        or not 0 <= incarnation < MAX_INCARNATION
    ):
        raise DecodeError(f"node incarnation must be an int in [0, 2**64), got {incarnation!r}")
    return UniqueAddress(Address(host, port), incarnation)


def address_to_wire(address: Address) -> str:
    """``address`` as ``"host:port"`` (``"[v6]:port"`` for IPv6)."""
    return str(address)


def address_from_wire(value: object) -> Address:
    """The inverse of `address_to_wire`.

    Raises:
        DecodeError: not a ``"host:port"`` string with a non-empty host.
    """
    if not isinstance(value, str):
        raise DecodeError(f"expected a 'host:port' string, got {value!r:.80}")
    try:
        address = Address.parse(value)
    except ValueError as exc:
        raise DecodeError(str(exc)) from exc
    if not address.host:
        raise DecodeError(f"address without a host: {value!r:.80}")
    return address


# -- local commands ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscribeTopology:
    """Tell the topology actor: send ``subscriber`` the current `TopologySnapshot` at once and
    a new one on every change, until it stops or unsubscribes. Subscribing twice is harmless.

    Attributes:
        subscriber: where the snapshots go (a local or remote ref).
    """

    subscriber: ActorRef[TopologySnapshot]


@dataclass(frozen=True, slots=True)
class UnsubscribeTopology:
    """Tell the topology actor: stop sending snapshots to ``subscriber``; idempotent."""

    subscriber: ActorRef[TopologySnapshot]


@dataclass(frozen=True, slots=True)
class SubscribeClusterEvents:
    """Tell the topology actor: subscribe ``subscriber`` to ``event_types`` on the event stream,
    after sending it, with ``initial_state_as_events``, the events that describe the current
    state (what `Cluster.subscribe` sends; see there). Local only: the event classes it
    carries do not cross the wire.

    Attributes:
        subscriber: where the events go.
        event_types: `ClusterDomainEvent` classes (bases match their subclasses).
        initial_state_as_events: send the current state as events first.
    """

    subscriber: ActorRef[ClusterDomainEvent]
    event_types: tuple[type[ClusterDomainEvent], ...]
    initial_state_as_events: bool = False


@dataclass(frozen=True, slots=True)
class LeaveCluster:
    """Tell the topology actor: leave the cluster gracefully (what `Cluster.leave` sends).

    Idempotent; a node that is not a member yet stops looking for a cluster.
    """


# -- joining -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitJoin:
    """A joiner asks a seed whether it belongs to a cluster.

    Attributes:
        sender: the joiner's address, ``"host:port"``.
        system_name: the joiner's actor system name; another name is refused.
        protocol_version: the joiner's `PROTOCOL_VERSION`; another version is refused.
        seeds: the seeds the joiner knows, as ``"host:port"`` strings.
    """

    sender: str
    system_name: str
    protocol_version: int
    seeds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InitJoinAck:
    """A member that is up answers `InitJoin`: join through me.

    Attributes:
        sender: the member's address.
    """

    sender: str


@dataclass(frozen=True, slots=True)
class InitJoinNack:
    """A live node that is not a member (yet) answers `InitJoin`.

    Attributes:
        sender: the node's address.
        seeds: the seeds it knows, so that nodes agree on which one is the first seed.
    """

    sender: str
    seeds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InitJoinRefused:
    """A node refuses the joiner for good (other system name or protocol version).

    Attributes:
        sender: the refusing node's address.
        reason: a sentence saying why, logged on both sides.
    """

    sender: str
    reason: str


@dataclass(frozen=True, slots=True)
class Join:
    """The joiner asks a member to admit it.

    Attributes:
        node: the joiner, ``(host, port, incarnation)``.
        node_id: its operator-given name.
        roles: its roles.
        system_name: its actor system name.
        protocol_version: its `PROTOCOL_VERSION`.
    """

    node: NodeWire
    node_id: str
    roles: tuple[str, ...]
    system_name: str
    protocol_version: int


@dataclass(frozen=True, slots=True)
class Welcome:
    """The member admitted the joiner: here is the state, with you in it as ``joining``.

    Attributes:
        sender: the admitting member.
        receiver: the joiner.
        gossip: `casty.cluster.gossip.Gossip.to_wire` of the state.
    """

    sender: NodeWire
    receiver: NodeWire
    gossip: Any


@dataclass(frozen=True, slots=True)
class JoinRetry:
    """The member cannot admit the joiner now; ask again later.

    Attributes:
        sender: the member's address.
        receiver: the joiner.
        reason: why (for example an older incarnation at the joiner's address is being
            removed).
    """

    sender: str
    receiver: NodeWire
    reason: str


@dataclass(frozen=True, slots=True)
class JoinDenied:
    """The member will never admit this joiner (another system name or protocol version, or
    this very incarnation was removed from the cluster).

    Attributes:
        sender: the member's address.
        receiver: the joiner.
        reason: why, logged on both sides.
    """

    sender: str
    receiver: NodeWire
    reason: str


# -- membership --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GossipEnvelope:
    """A full gossip state.

    Attributes:
        sender: the node that sends it.
        receiver: the node it is meant for (another incarnation ignores it).
        gossip: `casty.cluster.gossip.Gossip.to_wire` of the state.
    """

    sender: NodeWire
    receiver: NodeWire
    gossip: Any


@dataclass(frozen=True, slots=True)
class GossipStatusEnvelope:
    """A gossip status digest (the sender is inside it).

    Attributes:
        receiver: the node it is meant for.
        status: `casty.cluster.gossip.GossipStatus.to_wire` of the digest.
    """

    receiver: NodeWire
    status: Any


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A heartbeat request; the receiver answers `HeartbeatResponse` when it is ``receiver``.

    Attributes:
        sender: the monitoring node.
        receiver: the monitored node.
    """

    sender: NodeWire
    receiver: NodeWire


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    """The answer to a `Heartbeat`.

    Attributes:
        sender: the monitored node.
        receiver: the monitoring node.
    """

    sender: NodeWire
    receiver: NodeWire


@dataclass(frozen=True, slots=True)
class SetShardAllocations:
    """Local code (a shard region) to its topology actor: where the shards of a type live.

    Carried in every later `TopologySnapshot` (``shard_allocations[type_name]``), so topology
    subscribers such as external clients learn shard homes; sent again on every change.

    Attributes:
        type_name: the sharded type.
        allocations: shard id to the network address of the node that hosts it.
    """

    type_name: str
    allocations: Mapping[int, Address]
