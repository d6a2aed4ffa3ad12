"""Adapters: the stores behind the `Store` port, and `open_store`, which picks one by URL.

`open_store` imports a store's module only when its URL asks for it, so a process that uses
SQLite never loads psycopg, and importing this package connects to nothing.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from reference_impl.service.ports import InvalidStoreURL, Store

_EXPECTED = "expected memory://, sqlite:///PATH or postgresql://USER@HOST:PORT/DB"


def redact_url(url: str) -> str:
    """`url` with any password replaced by ***, for error messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url


def open_store(url: str) -> Store:
    """The store named by `url`: `memory://`, `sqlite:///path/file.db` (three slashes and a
    relative path, four for an absolute one), or `postgresql://user@host:port/db[?schema=NAME]`.

    Raises InvalidStoreURL for a malformed URL or an unknown scheme, StoreUnavailable when the
    database cannot be reached or opened.
    """
    if not isinstance(url, str) or "://" not in url:
        raise InvalidStoreURL(f"invalid store URL {redact_url(str(url))!r}: {_EXPECTED}")
    scheme, rest = url.split("://", 1)
    if scheme == "memory":
        if rest:
            raise InvalidStoreURL(f"invalid store URL {url!r}: memory:// takes nothing after //")
        from reference_impl.adapters.memory import MemoryStore

        return MemoryStore(url=url)
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else ""
        if not path or "?" in path or path == ":memory:":
            raise InvalidStoreURL(
                f"invalid store URL {url!r}: expected sqlite:///relative/file.db or"
                " sqlite:////absolute/file.db"
            )
        from reference_impl.adapters.sqlite import SqliteStore

        return SqliteStore(path, url)
    if scheme in ("postgresql", "postgres"):
        from reference_impl.adapters.postgres import PostgresStore

        return PostgresStore(url)
    raise InvalidStoreURL(
        f"invalid store URL {redact_url(url)!r}: unknown scheme {scheme!r} ({_EXPECTED})"
    )
