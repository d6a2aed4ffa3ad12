"""The Redis token bucket against the real Redis (the `redis_url` fixture: skips when Redis is
down, fails instead under TESTBED_REQUIRE_SERVICES=1).

The script reads the Redis server's clock, so refill is checked by its order (never before
retry_after, eventually after it) under generous deadlines, and refusals with rates so slow that
no machine is slow enough to refill in between; atomicity by many threads racing for one bucket.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from reference_impl.adapters.rate_limit import RedisTokenBucket

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    p = f"test:rl:{uuid.uuid4().hex}"
    yield p
    keys = list(client.scan_iter(f"{p}:*"))
    if keys:
        client.delete(*keys)


def test_burst_then_refusal_with_retry_after(client: redis.Redis, prefix: str) -> None:
    # A slow refill (one token per 100 s), so however slowly this machine runs the calls, the
    # bucket cannot refill in between: the answer is fixed, only retry_after shrinks with time.
    bucket = RedisTokenBucket(client, rate=0.01, burst=3, prefix=prefix)
    started = time.monotonic()
    assert [bucket.allow("acme")[0] for _ in range(3)] == [True, True, True]
    allowed, retry_after = bucket.allow("acme")
    elapsed = time.monotonic() - started
    assert not allowed
    # One token at 0.01/s is 100 s, less what elapsed since the first token was taken.
    assert 100.0 - elapsed - 0.01 <= retry_after <= 100.0


def test_tokens_refill_at_the_rate_and_never_early(client: redis.Redis, prefix: str) -> None:
    bucket = RedisTokenBucket(client, rate=2.0, burst=1, prefix=prefix)
    assert bucket.allow("acme") == (True, 0.0)
    deadline = time.monotonic() + 30.0
    while True:  # a slow machine may refill between calls: take tokens until one is refused
        refused_from = time.monotonic()
        allowed, retry_after = bucket.allow("acme")
        if not allowed:
            break
        assert time.monotonic() < deadline, "never refused"
    assert 0.0 < retry_after <= 0.5
    while not bucket.allow("acme")[0]:
        assert time.monotonic() < deadline, "the bucket never refilled"
        time.sleep(0.02)
    # Order, not speed: the token came back no sooner than retry_after said.
    assert time.monotonic() - refused_from >= retry_after - 0.01


def test_buckets_are_per_tenant_and_keyed_by_prefix(client: redis.Redis, prefix: str) -> None:
    bucket = RedisTokenBucket(client, rate=0.01, burst=1, prefix=prefix)
    assert bucket.allow("acme")[0] is True
    assert bucket.allow("acme")[0] is False
    assert bucket.allow("globex")[0] is True
    assert sorted(k.decode() for k in client.scan_iter(f"{prefix}:*")) == [
        f"{prefix}:acme",
        f"{prefix}:globex",
    ]
    # An idle bucket expires once it would be full again (burst / rate), plus a margin.
    ttl = client.pttl(f"{prefix}:acme")
    assert 0 < ttl <= 101_000


def test_two_gateways_share_one_limit(client: redis.Redis, prefix: str) -> None:
    a = RedisTokenBucket(client, rate=0.01, burst=2, prefix=prefix)
    b = RedisTokenBucket(redis.Redis(connection_pool=client.connection_pool), 0.01, 2, prefix)
    assert [a.allow("acme")[0], b.allow("acme")[0], a.allow("acme")[0], b.allow("acme")[0]] == [
        True,
        True,
        False,
        False,
    ]


def test_concurrent_takers_never_exceed_the_burst(client: redis.Redis, prefix: str) -> None:
    # With a read-then-write outside one script, racing threads would each see a full bucket.
    bucket = RedisTokenBucket(client, rate=0.001, burst=25, prefix=prefix)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: bucket.allow("acme")[0], range(200)))
    assert sum(results) == 25
