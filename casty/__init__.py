"""Casty: an asyncio actor framework whose cluster stack is the library.

The curated public API: the actor core, the cluster events and values a user matches on, the
plug-in protocols and their URL coercions, and the error tree. Backends with optional drivers
(`SQLiteJournal`, `PostgresJournal`, `TLSTransport`'s certificate tooling, `DNSDiscovery`) are
imported from their family packages (`casty.journals`, ...) so that ``import casty`` needs only
msgpack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casty.abc import Address, Discovery, Journal, Serializer, Transport
from casty.actors import (
    ActorContext,
    ActorRef,
    ActorSystem,
    Backoff,
    Behavior,
    Behaviors,
    DeadLetter,
    EventStreamPublish,
    EventStreamSubscribe,
    EventStreamUnsubscribe,
    PostStop,
    PreRestart,
    StashBuffer,
    SupervisorStrategy,
    Terminated,
    TimerScheduler,
)
from casty.cluster.events import (
    ClusterDomainEvent,
    LeaderChanged,
    MemberEvent,
    MemberLeft,
    MemberRemoved,
    MemberUp,
    ReachableMember,
    TopologySnapshot,
    UnreachableMember,
)
from casty.cluster.member import Member, MemberStatus
from casty.cluster.protocol import SubscribeTopology
from casty.cluster.system import ClusteredActorSystem
from casty.discovery import as_discovery
from casty.errors import *  # noqa: F403 - the error tree is part of the public API
from casty.errors import __all__ as _errors_all
from casty.journals import as_journal
from casty.journals.memory import InMemoryJournal
from casty.serializers import as_serializer
from casty.transports import as_transport

if TYPE_CHECKING:
    from casty.client import ClusterClient
    from casty.sharding.messages import ShardEnvelope

__version__ = "0.1.0"

__all__ = [
    "ActorContext",
    "ActorRef",
    "ActorSystem",
    "Address",
    "Backoff",
    "Behavior",
    "Behaviors",
    "ClusterClient",
    "ClusterDomainEvent",
    "ClusteredActorSystem",
    "DeadLetter",
    "Discovery",
    "EventStreamPublish",
    "EventStreamSubscribe",
    "EventStreamUnsubscribe",
    "InMemoryJournal",
    "Journal",
    "LeaderChanged",
    "Member",
    "MemberEvent",
    "MemberLeft",
    "MemberRemoved",
    "MemberStatus",
    "MemberUp",
    "PostStop",
    "PreRestart",
    "ReachableMember",
    "Serializer",
    "ShardEnvelope",
    "StashBuffer",
    "SubscribeTopology",
    "SupervisorStrategy",
    "Terminated",
    "TimerScheduler",
    "TopologySnapshot",
    "Transport",
    "UnreachableMember",
    "__version__",
    "as_discovery",
    "as_journal",
    "as_serializer",
    "as_transport",
    *_errors_all,
]


if not TYPE_CHECKING:  # type checkers see the import above, and flag misspelt names

    _LAZY = {
        "ShardEnvelope": ("casty.sharding.messages", "ShardEnvelope"),
        "ClusterClient": ("casty.client", "ClusterClient"),
    }

    def __getattr__(name: str) -> Any:
        # Sharding and the client are imported on first use: a node that does not shard (a
        # cluster node process, a client) starts without them.
        if name in _LAZY:
            import importlib

            module, attr = _LAZY[name]
            value = getattr(importlib.import_module(module), attr)
            globals()[name] = value
            return value
        raise AttributeError(f"module 'casty' has no attribute {name!r}")
