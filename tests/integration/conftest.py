"""The integration tier's fixtures beyond the services' URLs (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reference_impl.adapters import open_store
from reference_impl.adapters.postgres import PostgresStore


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[PostgresStore]:
    """A PostgreSQL store on a fresh schema of its own, closed after the test."""
    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore)
    try:
        yield store
    finally:
        store.close()
