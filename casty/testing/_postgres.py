"""The PostgreSQL server of Casty's own test runs (internal: not part of `casty.testing`).

``CASTY_TEST_POSTGRES_DSN`` names the server (for example
``postgresql://postgres@127.0.0.1:5432/test``). Without it the PostgreSQL tests are skipped with
a reason; with ``CASTY_REQUIRE_POSTGRES=1`` they fail instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["drop_journal_tables", "require_postgres_dsn"]


def require_postgres_dsn() -> str:
    """The DSN of the test server; skips (or fails, see the module docstring) without one."""
    dsn = os.environ.get("CASTY_TEST_POSTGRES_DSN", "")
    if not dsn:
        reason = "CASTY_TEST_POSTGRES_DSN is not set"
        if os.environ.get("CASTY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}, and CASTY_REQUIRE_POSTGRES=1 requires PostgreSQL runs")
        pytest.skip(reason)
    return dsn


async def drop_journal_tables(dsn: str, table: str) -> None:
    """Drop the tables a `PostgresJournal` with ``table=table`` creates, if they exist."""
    import asyncpg  # an optional driver: only the PostgreSQL runs need it

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"DROP TABLE IF EXISTS {table}, {table}_snapshots")
    finally:
        await connection.close()
