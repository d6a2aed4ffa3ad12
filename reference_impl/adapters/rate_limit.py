"""Per-tenant rate limiting for the gateway: a token bucket, in-process or shared through Redis.

The gateway sees only the `RateLimiter` port: `allow(tenant)` takes one token from the tenant's
bucket and says whether the request may proceed and, if not, how many seconds until a token is
back. Each bucket holds up to `burst` tokens and refills at `rate` tokens per second.

- `TokenBucket` keeps the buckets in this process (one gateway process, the tests): thread-safe,
  with the clock injected so tests step time instead of sleeping.
- `RedisTokenBucket` keeps them in Redis (one key per tenant), so N gateway processes share one
  limit. One Lua script reads, refills, takes and writes atomically, and reads the time from the
  Redis server, so gateways on hosts with skewed clocks still agree on the refill.
- `Unlimited` is the limiter for runs that measure the system without a limit in front.

When Redis cannot be reached the limiter raises `RateLimiterUnavailable` and the gateway answers
503: failing closed keeps an outage of the limiter visible instead of silently unlimiting.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from reference_impl.service.ports import Clock


class RateLimiter(Protocol):
    def allow(self, tenant: str) -> tuple[bool, float]:
        """(allowed, retry_after seconds): retry_after is 0.0 when allowed."""
        ...


def blocks(limiter: RateLimiter) -> bool:
    """Whether `allow` may wait on I/O, so that the gateway must call it off its event loop (a
    limiter that does not say so is assumed to)."""
    return bool(getattr(limiter, "blocking", True))


class RateLimiterUnavailable(Exception):
    """The limiter's backing service cannot be reached; the message says which."""


def _check(rate: float, burst: int) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate: must be a positive number of tokens per second, got {rate}")
    if burst < 1:
        raise ValueError(f"burst: must be at least 1 token, got {burst}")


class Unlimited:
    blocking = False

    def allow(self, tenant: str) -> tuple[bool, float]:
        return True, 0.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBucket:
    """In-process token buckets, one per tenant, guarded by one lock."""

    blocking = False
    """`allow` takes a lock held for a few operations: cheap enough for the event loop."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        _check(rate, burst)
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, tenant: str) -> tuple[bool, float]:
        now = self._clock.now()
        with self._lock:
            bucket = self._buckets.get(tenant)
            if bucket is None:
                bucket = self._buckets[tenant] = _Bucket(float(self.burst), now)
            # max(): a clock that steps back must not drain the bucket.
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.at = max(bucket.at, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True, 0.0
            return False, (1.0 - bucket.tokens) / self.rate


# KEYS[1] = the tenant's bucket; ARGV = rate, burst. Returns {allowed, retry_after as a string}
# (Redis truncates Lua numbers to integers in replies, so fractions travel as text).
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'at', string.format('%.6f', math.max(at, now)))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, string.format('%.6f', retry)}
"""


class RedisTokenBucket:
    """Token buckets in Redis, keyed `{prefix}:{tenant}`; an idle bucket expires once full.

    `client` is a redis-py client (e.g. `redis.Redis.from_url(url)`, which connects lazily).
    """

    blocking = True
    """`allow` is a round trip to Redis."""

    def __init__(self, client: Any, rate: float, burst: int, prefix: str = "testbed:rl") -> None:
        _check(rate, burst)
        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self._client = client
        self._script = client.register_script(_LUA)

    @classmethod
    def from_url(
        cls, url: str, rate: float, burst: int, prefix: str = "testbed:rl"
    ) -> RedisTokenBucket:
        import redis

        return cls(redis.Redis.from_url(url), rate, burst, prefix)

    def key(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}"

    def allow(self, tenant: str) -> tuple[bool, float]:
        import redis

        try:
            allowed, retry = self._script(keys=[self.key(tenant)], args=[self.rate, self.burst])
        except redis.RedisError as e:
            raise RateLimiterUnavailable(f"rate limiter: Redis unavailable ({e})") from e
        return bool(allowed), float(retry)

    def close(self) -> None:
        self._client.close()
