"""`RemoteSettings`: the tunables of remoting, with their defaults and bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from casty.errors import ConfigurationError

__all__ = ["RemoteSettings"]


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """How a `RemoteActorSystem` talks to its peers. Times are seconds (``float``).

    Attributes:
        outbound_queue_size: user messages queued per peer (while connecting, reconnecting or
            under backpressure) before further ones become dead letters ("outbound queue
            full"); >= 1. Control messages (watch, terminated, heartbeats) are never dropped.
        handshake_timeout: how long either side waits for the other's handshake frame; a peer
            that connects and stays silent is dropped after it.
        failure_timeout: how long a peer may stay unreachable (no connection, reconnects
            failing) while this node has work for it before it is declared lost: watches on it
            fire `Terminated` and queued messages become dead letters. When a watch linked the
            two nodes (either way) its incarnation is also quarantined, so that it cannot come
            back after its actors were reported dead; a cluster whose partitions must heal
            keeps this above its downing time.
        min_backoff: the first reconnect delay; each failed attempt doubles it, up to
            ``max_backoff``, and each delay is drawn from [50 %, 100 %] of its nominal value
            ("equal jitter", M. Brooker, "Exponential Backoff And Jitter", AWS Architecture
            Blog, 2015), so peers that lost a node at once do not reconnect in lockstep.
        max_backoff: the largest reconnect delay.
        heartbeat_interval: heartbeat period towards peers whose actors this node watches.
        acceptable_heartbeat_pause: extra silence the phi accrual detector tolerates before
            suspecting a watched peer (Hayashibara et al., SRDS 2004; as in
            `casty.cluster.failure_detector`).
        phi_threshold: phi at which a connected but silent watched peer is declared lost.
        frame_messages: messages packed into one frame at most (a frame also stays within the
            transport's ``max_frame_size``); >= 1.
        shutdown_flush_timeout: how long shutdown waits for queued frames to leave.

    Raises:
        ConfigurationError: a value is out of its range.
    """

    outbound_queue_size: int = 100_000
    handshake_timeout: float = 5.0
    failure_timeout: float = 10.0
    min_backoff: float = 0.05
    max_backoff: float = 5.0
    heartbeat_interval: float = 1.0
    acceptable_heartbeat_pause: float = 3.0
    phi_threshold: float = 10.0
    frame_messages: int = 512
    shutdown_flush_timeout: float = 2.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "int":
                ok = type(value) is int and value >= 1
                expected = "an int >= 1"
            else:
                ok = (
                    type(value) in (int, float)
                    and math.isfinite(value)
                    and (value >= 0 if field.name == "acceptable_heartbeat_pause" else value > 0)
                )
                expected = "a finite number of seconds > 0"
            if not ok:
                raise ConfigurationError(
                    f"RemoteSettings.{field.name} must be {expected}, got {value!r}"
                )
        if self.max_backoff < self.min_backoff:
            raise ConfigurationError(
                f"RemoteSettings.max_backoff ({self.max_backoff}) is below min_backoff "
                f"({self.min_backoff})"
            )
