"""`SnapshotPolicy`: when an event-sourced entity saves its state, and what it then deletes."""

from __future__ import annotations

from dataclasses import dataclass

from casty.errors import ConfigurationError

__all__ = ["SnapshotPolicy"]


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """Save a snapshot of the state every ``every`` events and keep the newest ``keep``.

    Akka's ``RetentionCriteria.snapshotEvery(numberOfEvents, keepNSnapshots)``: after a write
    that carries the entity's sequence number across a multiple of ``every``, the state (as of
    that write) is serialized and saved in the background, while commands go on. Once the save
    succeeded, snapshots with ``sequence_nr <= S - keep * every`` are deleted (``S`` being the
    new snapshot's sequence number) and, with ``delete_events``, the events up to that bound
    too, so every snapshot kept still has all the events after it. A failed save or delete is
    logged and retried at the next multiple; it never stops the entity. At most one save runs
    at a time: multiples crossed meanwhile give one more save, of the state durable when the
    running save ends.

    Recovery loads the newest snapshot and replays only the events after it.

    Attributes:
        every: events between snapshots, >= 1.
        keep: snapshots kept, >= 1.
        delete_events: also delete the events older than the oldest snapshot kept.

    Raises:
        ConfigurationError: ``every`` or ``keep`` is not an int >= 1.
    """

    every: int
    keep: int = 2
    delete_events: bool = False

    def __post_init__(self) -> None:
        for name in ("every", "keep"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigurationError(
                    f"SnapshotPolicy.{name} must be an int >= 1, got {value!r}"
                )

    def due(self, before: int, after: int) -> bool:
        """Whether a write that moved the sequence number from ``before`` to ``after`` crossed
        a multiple of ``every``."""
        return after // self.every > before // self.every

    def retention_bound(self, sequence_nr: int) -> int:
        """The highest sequence number whose snapshots (and, with ``delete_events``, events)
        may go once a snapshot at ``sequence_nr`` is saved; 0 or less means nothing."""
        return sequence_nr - self.keep * self.every
