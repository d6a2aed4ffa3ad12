"""Fixtures for the services some tests need: PostgreSQL and Redis; and Ctrl-C as a terminal has it.

A test that asks for a service skips when it is unreachable, so the unit tiers run anywhere;
CI sets TESTBED_REQUIRE_SERVICES=1, and then an unreachable service fails the test instead, so
a green CI run cannot hide a skipped tier.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_URL = os.environ.get("TESTBED_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TESTBED_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_configure(config: pytest.Config) -> None:
    """A shell starts a background job (`make test &`, a CI step run with `&`) with SIGINT
    ignored, and every process it starts inherits that: the tests that press Ctrl-C (on this
    process, a campaign, a load run) would wait on processes that never see it. Python's own
    handler here is reset to the default at each exec, so the processes the tests start take
    Ctrl-C again too."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
