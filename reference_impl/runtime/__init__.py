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
from reference_impl.bugs import enabled
from reference_impl.runtime.consumer import ConsumerLoop
from reference_impl.runtime.metrics import WorkerCollector
from reference_impl.runtime.wakeup import PgSignal, Wakeup, channel_for
from reference_impl.runtime.workers import GROUPS, build_member
from reference_impl.service.checks import CHECKS, CheckerSettings, ChecksConfig
from reference_impl.service.members import GroupSettings
from reference_impl.service.payments import PaymentsConfig
from reference_impl.service.ports import Store

if TYPE_CHECKING:  # the gateway's deps import fastapi; a worker process never needs it
    from reference_impl.api.deps import GatewayDeps

log = logging.getLogger(__name__)


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
    """Requests per second per tenant; generous, so it guards, not throttles."""
    rate_burst: int | None = None
    """The bucket's size in tokens; None: the rate's (at least 1)."""
    idle_wait: float = 0.25
    """Seconds an idle consumer waits before fetching again when no wake-up came (across
    processes on SQLite nothing signals a commit)."""
    batch_size: int = 100
    session_timeout: float = 10.0
    """A consumer that has not heartbeat for this long loses its partitions to the others."""
    settlement_cutoff: float = 10.0
    """Seconds between settlement cut-offs (close, net and send the open batches)."""
    partner_day: float = 60.0
    """The simulated bank partner's day in seconds: a statement per currency per day."""
    bugs: tuple[str, ...] = ()
    """Bug-zoo variants (the load runtime's `--bug`); empty in any real deployment."""
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    """The compliance checks: off, in parallel (groups of their own) or in sequence."""
    checkers: CheckerSettings = field(default_factory=CheckerSettings)
    operator_keys: tuple[str, ...] = ()
    """Keys that may review held payments (POST /v1/payments/{id}/review)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RuntimeConfig:
        data = json.loads(text)
        data["bugs"] = tuple(data.get("bugs", ()))
        data["operator_keys"] = tuple(data.get("operator_keys", ()))
        checks = data.get("checks", {})
        data["checks"] = ChecksConfig(**{**checks, "checks": tuple(checks.get("checks", CHECKS))})
        checkers = data.get("checkers", {})
        run = tuple(checkers.get("run", CHECKS))
        data["checkers"] = CheckerSettings(**{**checkers, "run": run})
        return cls(**data)

    @property
    def groups(self) -> tuple[str, ...]:
        """The consumer groups this deployment runs (the check groups in parallel mode)."""
        if self.checks.on and self.checks.mode == "parallel":
            return (*GROUPS, *self.checks.checks)
        return GROUPS

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
    loops: list[ConsumerLoop] = field(default_factory=list)
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
            WorkerCollector(
                runtime.store, config.partitions, config.tenants, runtime.loops, config.groups
            )
        )
        return runtime

    @property
    def payments_config(self) -> PaymentsConfig:
        c = self.config
        return PaymentsConfig(partitions=c.partitions, bugs=enabled(c.bugs), checks=c.checks)

    @property
    def group_settings(self) -> GroupSettings:
        c = self.config
        return GroupSettings(c.partitions, c.batch_size, c.session_timeout, c.idle_wait)

    def rate_limiter(self) -> RateLimiter:
        rate = self.config.rate_limit
        burst = self.config.rate_burst or max(1, int(rate))
        if self.config.redis_url:
            return RedisTokenBucket.from_url(self.config.redis_url, rate, burst)
        return TokenBucket(rate, burst, self.clock)

    def gateway_deps(self) -> GatewayDeps:
        from reference_impl.api.deps import GatewayDeps

        return GatewayDeps(
            store=self.store,
            api_keys=dict(self.config.api_keys),
            clock=self.clock,
            new_id=new_id,
            rate_limiter=self.rate_limiter(),
            payments=self.payments_config,
            operator_keys=frozenset(self.config.operator_keys),
            notify=self.wakeup.notify,
            registry=self.registry,
        )

    def start_workers(self, groups: Sequence[str] | None = None) -> None:
        """Start one member of each group (default: every group the config runs), each on a
        thread of its own."""
        c = self.config
        for group in c.groups if groups is None else groups:
            member = build_member(
                group,
                self.store,
                self.clock,
                self.group_settings,
                self.payments_config,
                c.settlement_cutoff,
                c.partner_day,
                c.tenants,
                self._on_commit,
                c.checkers,
            )
            loop = ConsumerLoop(group, self.store, [member], self.wakeup, self.clock)
            self.loops.append(loop)
            loop.start()

    def _on_commit(self, emitted: Sequence[object]) -> None:
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
