"""The store contract, run against each store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_contract import StoreContract

from reference_impl.adapters import open_store
from reference_impl.adapters.memory import MemoryStore
from reference_impl.adapters.postgres import PostgresStore
from reference_impl.adapters.sqlite import SqliteStore
from reference_impl.service.ports import Store


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Store:
        store = open_store("memory://")
        assert isinstance(store, MemoryStore)
        return store


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = open_store(f"sqlite:///{tmp_path}/ledger.db")
        assert isinstance(store, SqliteStore)
        yield store
        store.close()


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[Store]:
        store = open_store(postgres_url)
        assert isinstance(store, PostgresStore)
        yield store
        store.close()
