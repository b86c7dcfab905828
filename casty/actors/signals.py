"""Lifecycle signals: `PostStop`, `PreRestart` and `Terminated`.

`PostStop` and `PreRestart` go to the ``on_signal`` handler of `Behaviors.receive`; `Terminated`
(death watch) arrives through the mailbox like a message, in order after every message the
watched actor sent before it stopped, so a message handler can ``match`` it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from casty.actors.ref import ActorRef

__all__ = ["PostStop", "PreRestart", "Signal", "Terminated"]


class Signal:
    """Base class of lifecycle signals."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class PostStop(Signal):
    """The actor has stopped: its children are stopped and no message will follow.

    Delivered to ``on_signal`` of the behavior current when the actor stopped (also after a
    failure that stopped it). What the handler returns is ignored; an exception is logged. An
    actor stopped before it started (its setup never ran) has no behavior to signal.
    """


@dataclass(frozen=True, slots=True)
class PreRestart(Signal):
    """The actor is about to restart after a failure; its children are already stopped.

    Delivered to ``on_signal`` of the failed behavior, before the supervised behavior is set up
    again. What the handler returns is ignored; an exception is logged.
    """


@dataclass(frozen=True, slots=True)
class Terminated(Signal):
    """A watched actor stopped (see `ActorContext.watch`).

    Delivered to the watcher's message handler, once, after every message the watched actor sent
    to the watcher before stopping. Not delivered after `ActorContext.unwatch`.

    Attributes:
        ref: the actor that stopped.
    """

    ref: ActorRef[Any]
