"""Fixtures for the services some tests need: PostgreSQL and Redis.

A test that asks for a service skips when it is unreachable, so the unit tiers run anywhere;
CI sets TESTBED_REQUIRE_SERVICES=1, and then an unreachable service fails the test instead, so
a green CI run cannot hide a skipped tier.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_URL = os.environ.get("TESTBED_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TESTBED_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unavailable(service: str, url: str, error: Exception) -> None:
    message = f"{service} at {url} is unreachable: {' '.join(str(error).split())}"
    if os.environ.get("TESTBED_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (TESTBED_REQUIRE_SERVICES=1: the service is required)")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A store URL with a fresh schema of its own, dropped after the test."""
    import psycopg
    from psycopg import sql

    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        _unavailable("PostgreSQL", POSTGRES_URL, e)
        raise  # unreachable: skip and fail raise
    schema = f"t_{uuid.uuid4().hex[:16]}"
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}schema={schema}"
    finally:
        with admin:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


@pytest.fixture
def redis_url() -> str:
    """The Redis URL, once a PING has answered."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as e:
        _unavailable("Redis", REDIS_URL, e)
    finally:
        client.close()
    return REDIS_URL
