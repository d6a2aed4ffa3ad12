"""The composition root for the real processes: wall clock, uuid ids, a store, the gateway's
deps and the worker loops, built from one `RuntimeConfig`.

Nothing here connects at import time; `Runtime.open` does, and reports a bad store URL or an
unreachable database as the store's own error (the caller maps it to an exit code). The same
config, serialised to JSON (`to_json`/`from_json`), starts every process of a multi-process
deployment, so gateway processes and worker processes agree on partitions and tenants.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from reference_impl.adapters import open_store
from reference_impl.adapters.rate_limit import RateLimiter, RedisTokenBucket, TokenBucket
from reference_impl.runtime.housekeeping import idempotency_purge
from reference_impl.runtime.metrics import WorkerCollector
from reference_impl.runtime.wakeup import PgSignal, Wakeup, channel_for
from reference_impl.runtime.workers import (
    WorkerConfig,
    WorkerLoop,
    payments_consumer,
    reporting_consumer,
)
from reference_impl.service.payments import PaymentsConfig
from reference_impl.service.ports import Store

if TYPE_CHECKING:  # the gateway's deps import fastapi; a worker process never needs it
    from reference_impl.api.deps import GatewayDeps

log = logging.getLogger(__name__)

GROUPS = ("payments", "settlement", "reporting")


class WallClock:
    def now(self) -> float:
        return time.time()


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    store_url: str
    api_keys: Mapping[str, str]
    """API key -> tenant."""
    redis_url: str | None = None
    partitions: int = 8
    rate_limit: float = 10_000.0
    """Requests per second per tenant (burst the same); generous, so it guards, not throttles."""
    idle_wait: float = 0.25
    settlement_cutoff: float = 10.0
    """Seconds between settlement cut-offs (close, net and send the open batches)."""
    partner_day: float = 60.0
    """The simulated bank partner's day in seconds: a statement per currency per day."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RuntimeConfig:
        return cls(**json.loads(text))

    @property
    def tenants(self) -> list[str]:
        return sorted(set(self.api_keys.values()))


@dataclass
class Runtime:
    config: RuntimeConfig
    store: Store
    clock: WallClock = field(default_factory=WallClock)
    wakeup: Wakeup = field(default_factory=Wakeup)
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    loops: list[WorkerLoop] = field(default_factory=list)
    _signal: PgSignal | None = None

    @classmethod
    def open(cls, config: RuntimeConfig) -> Runtime:
        """Open the store (raises InvalidStoreURL / StoreUnavailable) and wire the signals."""
        runtime = cls(config, open_store(config.store_url))
        from reference_impl.adapters.postgres import PostgresStore

        if isinstance(runtime.store, PostgresStore):
            store = runtime.store
            runtime._signal = PgSignal(store.conninfo, channel_for(store.schema), runtime.wakeup)
            runtime._signal.start()
        runtime.registry.register(
            WorkerCollector(runtime.store, config.partitions, config.tenants, runtime.loops)
        )
        return runtime

    @property
    def worker_config(self) -> WorkerConfig:
        return WorkerConfig(
            payments=PaymentsConfig(partitions=self.config.partitions),
            idle_wait=self.config.idle_wait,
        )

    def rate_limiter(self) -> RateLimiter:
        rate = self.config.rate_limit
        if self.config.redis_url:
            return RedisTokenBucket.from_url(self.config.redis_url, rate, int(rate))
        return TokenBucket(rate, int(rate), self.clock)

    def gateway_deps(self) -> GatewayDeps:
        from reference_impl.api.deps import GatewayDeps

        return GatewayDeps(
            store=self.store,
            api_keys=dict(self.config.api_keys),
            clock=self.clock,
            new_id=new_id,
            rate_limiter=self.rate_limiter(),
            payments=self.worker_config.payments,
            notify=self.wakeup.notify,
            registry=self.registry,
        )

    def start_workers(
        self, groups: Sequence[str] = GROUPS, shard: int = 0, shards: int = 1
    ) -> None:
        """Start one loop per group; payments partitions p with p % shards == shard."""
        cfg = self.worker_config
        emit = self._on_emit
        for group in groups:
            if group == "payments":
                parts = [p for p in range(self.config.partitions) if p % shards == shard]
                consumers = [payments_consumer(self.store, self.clock, cfg, parts, emit)]
                loop = WorkerLoop("payments", consumers, self.wakeup, self.clock, cfg.idle_wait)
            elif group == "reporting":
                consumers = [reporting_consumer(self.store, self.clock, cfg)]
                purge = [idempotency_purge(self.store, self.config.tenants)]
                loop = WorkerLoop(
                    "reporting", consumers, self.wakeup, self.clock, cfg.idle_wait, purge
                )
            elif group == "settlement":
                from reference_impl.runtime.settlement import settlement_loop

                loop = settlement_loop(
                    self.store,
                    self.clock,
                    cfg,
                    self.wakeup,
                    self.config.settlement_cutoff,
                    self.config.partner_day,
                )
            else:
                raise ValueError(f"group: unknown consumer group {group!r} (one of {GROUPS})")
            self.loops.append(loop)
            loop.start()

    def _on_emit(self, n: int) -> None:
        self.wakeup.notify()

    def stop_workers(self, timeout: float = 30.0) -> bool:
        """Let each loop finish and commit its current batch; True if all stopped in time."""
        for loop in self.loops:
            loop.stop()
        deadline = time.monotonic() + timeout
        stopped = all(loop.join(max(0.0, deadline - time.monotonic())) for loop in self.loops)
        if not stopped:
            log.error("worker loops still running after %.0fs", timeout)
        return stopped

    def close(self) -> None:
        if self._signal is not None:
            self._signal.stop()
        self.store.close()
