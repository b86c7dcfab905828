"""Fixtures for the contract runners: the PostgreSQL server the journal contract runs against.

``CASTY_TEST_POSTGRES_DSN`` names the server (for example
``postgresql://postgres@127.0.0.1:5432/test``). Without it the PostgreSQL runs are skipped with
a reason; with ``CASTY_REQUIRE_POSTGRES=1`` they fail instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from casty.testing._postgres import drop_journal_tables, require_postgres_dsn


@pytest.fixture(scope="session")
def postgres_journal_url() -> Iterator[str]:
    """A ``postgresql://`` journal URL with a table name unique to this test session.

    The tables are dropped when the session ends, so runs never collide or accumulate.
    """
    dsn = require_postgres_dsn()
    table = f"casty_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in dsn else "?"
    yield f"{dsn}{separator}table={table}"
    asyncio.run(drop_journal_tables(dsn, table))
