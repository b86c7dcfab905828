"""Fixtures for the contract runners: the PostgreSQL server the journal contract runs against.

``CASTY_TEST_POSTGRES_DSN`` names the server (for example
``postgresql://postgres@127.0.0.1:5432/test``). Without it the PostgreSQL runs are skipped with
a reason; with ``CASTY_REQUIRE_POSTGRES=1`` they fail instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest


def _postgres_dsn() -> str:
    dsn = os.environ.get("CASTY_TEST_POSTGRES_DSN", "")
    if not dsn:
        reason = "CASTY_TEST_POSTGRES_DSN is not set"
        if os.environ.get("CASTY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}, and CASTY_REQUIRE_POSTGRES=1 requires PostgreSQL runs")
        pytest.skip(reason)
    return dsn


async def _drop_tables(dsn: str, table: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"DROP TABLE IF EXISTS {table}, {table}_snapshots")
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_journal_url() -> Iterator[str]:
    """A ``postgresql://`` journal URL with a table name unique to this test session.

    The tables are dropped when the session ends, so runs never collide or accumulate.
    """
    dsn = _postgres_dsn()
    table = f"casty_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in dsn else "?"
    yield f"{dsn}{separator}table={table}"
    asyncio.run(_drop_tables(dsn, table))
