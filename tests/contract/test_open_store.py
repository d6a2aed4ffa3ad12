"""`open_store`: each URL form opens its store; a bad URL or an unreachable database says which."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_impl.adapters import open_store
from reference_impl.adapters.memory import MemoryStore
from reference_impl.adapters.sqlite import SqliteStore
from reference_impl.service.ports import InvalidStoreURL, StoreUnavailable


@pytest.mark.parametrize(
    "url",
    [
        "nonsense",
        "",
        "ftp://host/x",
        "memory://somewhere",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/file.db",
        "postgresql://user@host:notaport/db",
        "postgresql://user@host/db?schema=Not-An-Identifier",
    ],
)
def test_malformed_urls_raise_invalid_store_url_naming_the_url(url: str) -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        open_store(url)
    message = str(caught.value)
    assert repr(url) in message
    assert "\n" not in message


def test_passwords_never_appear_in_messages() -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        open_store("postgresql://user:hunter2@host:notaport/db")
    assert "hunter2" not in str(caught.value)
    assert "postgresql://user:***@host:notaport/db" in str(caught.value)


def test_memory_and_sqlite_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    absolute = open_store(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(absolute, SqliteStore)
    absolute.close()
    assert (tmp_path / "a.db").exists()


def test_unopenable_sqlite_file_raises_store_unavailable() -> None:
    url = "sqlite:////nonexistent-dir/x.db"
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    assert url in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreachable_postgres_raises_store_unavailable() -> None:
    url = "postgresql://postgres:secret@127.0.0.1:1/x"
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    message = str(caught.value)
    assert "postgresql://postgres:***@127.0.0.1:1/x" in message
    assert "secret" not in message
    assert "\n" not in message
