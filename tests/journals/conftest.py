"""Fixtures for the backend-specific journal tests: a PostgreSQL table of one's own per test.

``CASTY_TEST_POSTGRES_DSN`` names the server; unset, PostgreSQL tests skip with a reason, or
fail when ``CASTY_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio


@pytest.fixture
def postgres_dsn() -> str:
    dsn = os.environ.get("CASTY_TEST_POSTGRES_DSN", "")
    if not dsn:
        reason = "CASTY_TEST_POSTGRES_DSN is not set"
        if os.environ.get("CASTY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}, and CASTY_REQUIRE_POSTGRES=1 requires PostgreSQL runs")
        pytest.skip(reason)
    return dsn


@pytest_asyncio.fixture
async def postgres_table(postgres_dsn: str) -> AsyncIterator[str]:
    """A table name no other test uses; its tables are dropped afterwards."""
    import asyncpg

    table = f"casty_test_{uuid.uuid4().hex[:12]}"
    yield table
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute(f"DROP TABLE IF EXISTS {table}, {table}_snapshots")
    finally:
        await connection.close()
