"""Every error Casty raises, as one tree.

```
CastyError
├── ConfigurationError                  bad argument, option or configuration key
│   └── BackendNotFound (also LookupError)   unknown URL scheme or missing extra
├── ResourceClosed                      used after aclose()
├── JournalError
│   ├── JournalUnavailable              store unreachable or timed out: retryable
│   ├── WriteRejected                   this input can never be stored: do not retry
│   │   └── StaleEpoch                  the writer's fencing token is older than the journal's
│   ├── SequenceConflict                sequence_nr already taken: another writer exists
│   └── CorruptEntry                    a stored entry cannot be read back
├── TransportError
│   ├── ConnectFailed (also OSError)    no connection could be opened
│   ├── ConnectionBroken                peer vanished, reset, or cancelled mid-frame
│   ├── FrameTooLarge                   a frame above the configured maximum
│   └── HandshakeFailed                 TLS, protocol version, system name or incarnation mismatch
├── SerializationError
│   ├── EncodeError                     the value has no wire form
│   └── DecodeError                     unknown tag, invalid field, truncated data
├── DiscoveryError
│   └── DiscoveryUnavailable            the seed source cannot be read right now: retryable
├── ActorError
│   ├── InvalidActorName (also ValueError)   empty name, reserved characters, duplicate sibling
│   ├── AskTimeout (also TimeoutError)  no reply within the ask's timeout
│   ├── ActorStopped                    the target stopped before it could answer
│   ├── MailboxFull                     an ask's request was dropped by a full bounded mailbox
│   ├── StashOverflow                   a stash is at its capacity
│   └── UnhandledMessage                a behavior returned Behaviors.unhandled() (inside asks)
├── PersistenceError
│   └── PersistFailed                   an event-sourced command's events were not written
├── ClusterError
│   ├── JoinRefused                     a seed refused this node (name, version, shard settings)
│   ├── QuorumNotReached (also TimeoutError)  required_quorum members were not up in time
│   └── NodeDowned                      this node was downed and stops serving
├── ShardingError
│   └── ShardUnavailable                a shard has no live owner within the timeout
├── ReplicationError
│   └── ReplicationTimeout (also TimeoutError)  min_acks replicas did not confirm in time
└── CoordinationError
    ├── LeaseExpired                    a lock or permit lease ran out before release
    ├── AcquireTimeout (also TimeoutError)  a lock or permit stayed busy for the whole wait
    └── BarrierBroken                   a barrier participant died or the barrier timed out
```

`asyncio.CancelledError` and `KeyboardInterrupt` are never wrapped. Backends translate their
driver's errors at one place each and chain them (`raise ... from exc`), so `__cause__` holds the
original.
"""

from __future__ import annotations

__all__ = [
    "AcquireTimeout",
    "ActorError",
    "ActorStopped",
    "AskTimeout",
    "BackendNotFound",
    "BarrierBroken",
    "CastyError",
    "ClusterError",
    "ConfigurationError",
    "ConnectFailed",
    "ConnectionBroken",
    "CoordinationError",
    "CorruptEntry",
    "DecodeError",
    "DiscoveryError",
    "DiscoveryUnavailable",
    "EncodeError",
    "FrameTooLarge",
    "HandshakeFailed",
    "InvalidActorName",
    "JoinRefused",
    "JournalError",
    "JournalUnavailable",
    "LeaseExpired",
    "MailboxFull",
    "NodeDowned",
    "PersistFailed",
    "PersistenceError",
    "QuorumNotReached",
    "ReplicationError",
    "ReplicationTimeout",
    "ResourceClosed",
    "SequenceConflict",
    "SerializationError",
    "ShardUnavailable",
    "ShardingError",
    "StaleEpoch",
    "StashOverflow",
    "TransportError",
    "UnhandledMessage",
    "WriteRejected",
]


class CastyError(Exception):
    """Base class of every error Casty raises on purpose."""


class ConfigurationError(CastyError):
    """An argument, option or configuration key is invalid; fix the input, do not retry."""


class BackendNotFound(ConfigurationError, LookupError):
    """A backend URL names an unknown scheme, or the extra that provides it is not installed."""


class ResourceClosed(CastyError):
    """The object was used after `aclose()`; open a new one."""


class JournalError(CastyError):
    """Base class of journal failures."""


class JournalUnavailable(JournalError):
    """The store is unreachable or timed out; nothing is known to be written; retrying is safe."""


class WriteRejected(JournalError):
    """The store refused this input for good (too large, undecodable, fenced); do not retry."""


class StaleEpoch(WriteRejected):
    """The write carries an older fencing token (epoch) than the journal has seen."""


class SequenceConflict(JournalError):
    """A sequence_nr in the write is already taken: another writer owns this persistence id."""


class CorruptEntry(JournalError):
    """A stored entry cannot be read back (bad row, unknown serializer, undecodable payload)."""


class TransportError(CastyError):
    """Base class of transport failures."""


class ConnectFailed(TransportError, OSError):
    """No connection could be opened to the address; retrying later may succeed."""


class ConnectionBroken(TransportError):
    """The peer vanished, reset the connection, or a frame was cut off mid-way."""


class FrameTooLarge(TransportError):
    """A frame exceeds the transport's maximum frame size (sending or receiving)."""


class HandshakeFailed(TransportError):
    """The TLS or Casty handshake failed: untrusted peer, version, system name or incarnation.

    Attributes:
        permanent: the failure comes from configuration (an untrusted, expired or missing
            certificate, a peer that is no Casty TLS listener, another system name...):
            retrying fails the same way until a node's configuration changes. ``False`` for
            failures a retry may not meet: the peer went silent or closed the connection
            during the handshake (a node dying or shutting down looks the same).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SerializationError(CastyError):
    """Base class of serializer failures."""


class EncodeError(SerializationError):
    """The value has no wire form under this serializer (unknown type, strict mode)."""


class DecodeError(SerializationError):
    """The bytes are not a valid encoding: unknown tag or type, invalid field, truncated data."""


class DiscoveryError(CastyError):
    """Base class of discovery failures."""


class DiscoveryUnavailable(DiscoveryError):
    """The seed source cannot be read right now (DNS timeout, file missing); retrying is safe."""


class ActorError(CastyError):
    """Base class of actor-core failures."""


class InvalidActorName(ActorError, ValueError):
    """An actor name is empty, '.' or '..', has a character other than ASCII letters, digits and
    '-_.~%', or is taken by a live sibling."""


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived within the ask's timeout; the request may or may not have been handled."""


class ActorStopped(ActorError):
    """The target actor is stopped (or stopped while the request was pending)."""


class MailboxFull(ActorError):
    """An ask's request was dropped because the target's bounded mailbox was full; retrying
    later may succeed."""


class StashOverflow(ActorError):
    """A stash is full; the message was not stashed."""


class UnhandledMessage(ActorError):
    """The actor's behavior declared the message unhandled."""


class PersistenceError(CastyError):
    """Base class of event-sourcing failures seen by a command's sender."""


class PersistFailed(PersistenceError):
    """A command's events were not written (journal rejected them or is unavailable)."""


class ClusterError(CastyError):
    """Base class of cluster membership failures."""


class JoinRefused(ClusterError):
    """A seed refused this node: other system name, protocol version or shard settings."""


class QuorumNotReached(ClusterError, TimeoutError):
    """`required_quorum` members were not up before the start-up timeout."""


class NodeDowned(ClusterError):
    """This node was downed by the cluster (split brain resolver) and no longer serves."""


class ShardingError(CastyError):
    """Base class of cluster sharding failures."""


class ShardUnavailable(ShardingError):
    """A shard had no live owner within the timeout; the message went to dead letters."""


class ReplicationError(CastyError):
    """Base class of replication failures."""


class ReplicationTimeout(ReplicationError, TimeoutError):
    """Fewer than `min_acks` replicas confirmed the events within `ack_timeout`."""


class CoordinationError(CastyError):
    """Base class of distributed lock, semaphore and barrier failures."""


class LeaseExpired(CoordinationError):
    """A lock or permit lease expired before this holder released it; its fencing token is void."""


class AcquireTimeout(CoordinationError, TimeoutError):
    """A lock or permit was not granted within the acquire's timeout."""


class BarrierBroken(CoordinationError):
    """A barrier cannot complete: a participant's node was downed, or the timeout passed."""
