"""Event sourcing: actors whose state is the fold of their stored events.

`event_sourced` (also ``Behaviors.event_sourced``) builds the behavior; its command handler
returns `persisted` (also ``Behaviors.persisted``) to store events; `SnapshotPolicy` says when
to save snapshots. This package talks to the `casty.abc.Journal` protocol only: any journal
(memory, SQLite, PostgreSQL, a plug-in) works.
"""

from __future__ import annotations

from casty.persistence.effects import Persisted, persisted
from casty.persistence.entity import event_sourced
from casty.persistence.snapshots import SnapshotPolicy

__all__ = ["Persisted", "SnapshotPolicy", "event_sourced", "persisted"]
