"""Fixtures for the backend-specific journal tests: a PostgreSQL table of one's own per test.

``CASTY_TEST_POSTGRES_DSN`` names the server; unset, PostgreSQL tests skip with a reason, or
fail when ``CASTY_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from casty.testing._postgres import drop_journal_tables, require_postgres_dsn


@pytest.fixture
def postgres_dsn() -> str:
    return require_postgres_dsn()


@pytest_asyncio.fixture
async def postgres_table(postgres_dsn: str) -> AsyncIterator[str]:
    """A table name no other test uses; its tables are dropped afterwards."""
    table = f"casty_test_{uuid.uuid4().hex[:12]}"
    yield table
    await drop_journal_tables(postgres_dsn, table)
