"""`ReplicationConfig`: how many replicas a replicated entity keeps and how many must confirm."""

from __future__ import annotations

import math
from dataclasses import dataclass

from casty.errors import ConfigurationError

__all__ = ["ReplicationConfig"]


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    """How the events of a replicated event-sourced entity are copied to other nodes.

    The primary writes each batch of events to its own journal, pushes the stored entries to
    ``replicas`` replica stores on other nodes, and releases the commands' ``then`` callbacks
    only once ``min_acks`` of them have written the entries to their own journals.

    Attributes:
        replicas: replica stores per entity, an int >= 0.
        min_acks: replicas that must confirm a write before it counts as done, an int in
            ``0..replicas``. 0 acknowledges after the local write only (the push still happens,
            but a node loss can lose acknowledged events: see ``docs/replication.md``).
        ack_timeout: seconds (> 0, finite) to wait for ``min_acks`` confirmations; the write
            then fails with `casty.errors.ReplicationTimeout`.

    Raises:
        ConfigurationError: on construction, when a value is out of its bounds.
    """

    replicas: int = 1
    min_acks: int = 1
    ack_timeout: float = 2.0

    def __post_init__(self) -> None:
        if type(self.replicas) is not int or self.replicas < 0:
            raise ConfigurationError(f"replicas must be an int >= 0, got {self.replicas!r}")
        if type(self.min_acks) is not int or not 0 <= self.min_acks <= self.replicas:
            raise ConfigurationError(
                f"min_acks must be an int in 0..replicas ({self.replicas}), got {self.min_acks!r}"
            )
        timeout = self.ack_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigurationError(f"ack_timeout must be finite seconds > 0, got {timeout!r}")
        object.__setattr__(self, "ack_timeout", float(timeout))
