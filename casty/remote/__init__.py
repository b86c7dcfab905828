"""Remoting: actors on different nodes exchange messages, asks and death watch.

`RemoteActorSystem` is an `ActorSystem` bound to a transport. Addresses read
``casty://system@host:port/path`` (`ActorAddress`); a ref inside a message travels as its
address and resolves on arrival to a local ref or a `RemoteActorRef`. The wire format is in
`casty.remote.envelope`; the guarantees are in ``docs/remoting.md``.
"""

from __future__ import annotations

from casty.remote.address import ActorAddress
from casty.remote.envelope import PROTOCOL_VERSION
from casty.remote.events import (
    PeerConnected,
    PeerDisconnected,
    PeerEvent,
    PeerLost,
    PeerStatistics,
    RemoteDeadLetterReason,
    RemoteStatistics,
)
from casty.remote.ref import RemoteActorRef
from casty.remote.settings import RemoteSettings
from casty.remote.system import RemoteActorSystem

__all__ = [
    "PROTOCOL_VERSION",
    "ActorAddress",
    "PeerConnected",
    "PeerDisconnected",
    "PeerEvent",
    "PeerLost",
    "PeerStatistics",
    "RemoteActorRef",
    "RemoteActorSystem",
    "RemoteDeadLetterReason",
    "RemoteSettings",
    "RemoteStatistics",
]
