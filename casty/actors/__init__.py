"""The local actor core: behaviors, refs, contexts, the actor system and its services.

Everything here is re-exported by the top-level `casty` package.
"""

from __future__ import annotations

from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.cell import LocalActorRef
from casty.actors.context import ActorContext
from casty.actors.events import (
    DeadLetter,
    DeadLetterReason,
    EventStreamPublish,
    EventStreamSubscribe,
    EventStreamUnsubscribe,
)
from casty.actors.ref import ActorRef
from casty.actors.signals import PostStop, PreRestart, Signal, Terminated
from casty.actors.stash import StashBuffer
from casty.actors.supervision import Backoff, Directive, SupervisorStrategy
from casty.actors.system import ActorRefCodec, ActorSystem, ActorSystemStatistics
from casty.actors.timers import TimerScheduler

__all__ = [
    "ActorContext",
    "ActorRef",
    "ActorRefCodec",
    "ActorSystem",
    "ActorSystemStatistics",
    "Backoff",
    "Behavior",
    "Behaviors",
    "DeadLetter",
    "DeadLetterReason",
    "Directive",
    "EventStreamPublish",
    "EventStreamSubscribe",
    "EventStreamUnsubscribe",
    "LocalActorRef",
    "PostStop",
    "PreRestart",
    "Signal",
    "StashBuffer",
    "SupervisorStrategy",
    "Terminated",
    "TimerScheduler",
]
