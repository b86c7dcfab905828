"""Journal backends and their registry.

- ``memory://`` or ``memory://shared-name``:
  `InMemoryJournal` (extra: none)
- ``sqlite:///rel/path.db``, ``sqlite:////abs/path.db``, ``sqlite://``:
  `SQLiteJournal` (extra: ``sqlite``)
- ``postgresql://user@host:5432/db``, ``postgresql+asyncpg://...``:
  `PostgresJournal` (extra: ``postgres``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casty.abc import Journal
from casty.registry import BackendRegistry

if TYPE_CHECKING:
    from casty.journals.memory import InMemoryJournal
    from casty.journals.postgres import PostgresJournal
    from casty.journals.sqlite import SQLiteJournal

__all__ = ["InMemoryJournal", "PostgresJournal", "SQLiteJournal", "as_journal", "registry"]

registry: BackendRegistry[Journal] = BackendRegistry(
    "journals",
    Journal,
    {
        "memory": ("casty.journals.memory:InMemoryJournal", ""),
        "sqlite": ("casty.journals.sqlite:SQLiteJournal", "pip install 'casty[sqlite]'"),
        "sqlite+aiosqlite": ("casty.journals.sqlite:SQLiteJournal", "pip install 'casty[sqlite]'"),
        "postgresql": ("casty.journals.postgres:PostgresJournal", "pip install 'casty[postgres]'"),
        "postgresql+asyncpg": (
            "casty.journals.postgres:PostgresJournal",
            "pip install 'casty[postgres]'",
        ),
        "postgres": ("casty.journals.postgres:PostgresJournal", "pip install 'casty[postgres]'"),
    },
)

_LAZY = {
    "InMemoryJournal": "memory",
    "SQLiteJournal": "sqlite",
    "PostgresJournal": "postgresql",
}


def as_journal(value: Journal | str, **options: Any) -> Journal:
    """Return ``value`` if it is a `Journal`, else build one from its URL.

    Raises:
        TypeError: ``value`` is neither a journal nor a string.
        BackendNotFound: unknown scheme, or the extra is not installed.
    """
    return registry.coerce(value, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return registry.load(_LAZY[name])
    raise AttributeError(name)
