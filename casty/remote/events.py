"""What remoting publishes on the event stream, its dead-letter reasons and its statistics."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from casty.abc import Address

__all__ = [
    "PeerConnected",
    "PeerDisconnected",
    "PeerEvent",
    "PeerLost",
    "PeerStatistics",
    "RemoteDeadLetterReason",
    "RemoteStatistics",
]


class RemoteDeadLetterReason(StrEnum):
    """Why remoting dropped a message (the ``reason`` of its `DeadLetter`)."""

    OUTBOUND_QUEUE_FULL = "outbound queue full"
    """The peer's outbound queue held ``outbound_queue_size`` messages already."""
    PEER_UNREACHABLE = "peer unreachable"
    """Queued for a peer that did not come back within ``failure_timeout``, or that the
    failure detector gave up on."""
    PEER_SHUT_DOWN = "peer shut down"
    """Queued for a peer that announced its shutdown."""
    PEER_QUARANTINED = "peer quarantined"
    """Queued for a peer incarnation that was quarantined (declared lost or downed)."""
    HANDSHAKE_REFUSED = "handshake refused"
    """Queued for a peer that refused this node's handshake (system name, version...)."""
    HANDSHAKE_FAILED = "handshake failed"
    """Queued for a peer whose TLS or Casty handshake failed for good without a Casty refusal
    (`HandshakeFailed.permanent`): an untrusted, expired or missing certificate, a peer that
    is no Casty TLS listener, or garbage instead of an answer. A failure a retry may not meet
    (silence, a connection closed mid-handshake) keeps the queue until ``failure_timeout``."""
    CANNOT_ENCODE = "cannot encode"
    """The serializer has no wire form for the message."""
    MESSAGE_TOO_LARGE = "message too large"
    """The encoded message exceeds the transport's maximum frame size."""
    UNDECODABLE = "undecodable message"
    """Arrived from a peer but could not be decoded here (the message is the raw bytes)."""
    REMOTING_SHUT_DOWN = "remoting shut down"
    """Still queued, or told, when this node's remoting shut down."""


@dataclass(frozen=True, slots=True)
class PeerEvent:
    """Base class of remoting lifecycle events (subscribe to it to receive them all).

    Attributes:
        address: the peer node's address.
    """

    address: Address


@dataclass(frozen=True, slots=True)
class PeerConnected(PeerEvent):
    """A connection to a peer completed its handshake.

    Attributes:
        incarnation: the peer's incarnation (random per start of its node).
    """

    incarnation: int


@dataclass(frozen=True, slots=True)
class PeerDisconnected(PeerEvent):
    """The connection to a peer ended; remoting reconnects while it has work for the peer.

    Attributes:
        incarnation: the peer's incarnation.
        reason: why the connection ended.
    """

    incarnation: int
    reason: str


@dataclass(frozen=True, slots=True)
class PeerLost(PeerEvent):
    """This node gave up on a peer: it shut down, stayed unreachable for
    ``failure_timeout``, stopped answering heartbeats, restarted, or was quarantined. Watches on
    its actors fired `Terminated`; its queued messages became dead letters (except after a
    restart, when they go to the new incarnation).

    Attributes:
        incarnation: the peer's incarnation, ``None`` when it never answered.
        reason: a `RemoteDeadLetterReason` value, then details after a colon.
        quarantined: whether that incarnation is refused from now on. It is, unless the peer
            was merely unreachable while no watch linked the two nodes (then the same
            incarnation may reconnect later).
    """

    incarnation: int | None
    reason: str
    quarantined: bool


@dataclass(frozen=True, slots=True)
class PeerStatistics:
    """A snapshot of this node's association with one peer.

    Attributes:
        address: the peer node's address.
        incarnation: its incarnation, ``None`` before the first handshake or after it was lost.
        connected: whether a connection is established.
        queued: user messages waiting in the outbound queue.
        messages_sent: entries (messages and control entries such as heartbeats) handed to
            connections to the peer.
        messages_received: entries received from the peer.
        watching: actors of the peer watched from this node.
        watched_by: actors of this node the peer watches.
        frames_sent: frames handed to connections to the peer.
        bytes_sent: bytes of those frames (framing overhead excluded).
        frames_received: frames received from the peer.
        bytes_received: bytes of those frames.
    """

    address: Address
    incarnation: int | None
    connected: bool
    queued: int
    messages_sent: int
    messages_received: int
    watching: int
    watched_by: int
    frames_sent: int
    bytes_sent: int
    frames_received: int
    bytes_received: int


@dataclass(frozen=True, slots=True)
class RemoteStatistics:
    """A snapshot of a node's remoting.

    Attributes:
        address: this node's address (``casty://system@host:port``).
        incarnation: this node's incarnation.
        peers: one entry per known peer, sorted by address.
    """

    address: str
    incarnation: int
    peers: tuple[PeerStatistics, ...]
