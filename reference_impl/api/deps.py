"""What the gateway needs from its composition root, in one value.

The runtime (reference_impl/runtime.py) and the tests build a `GatewayDeps` and hand it to
`create_app`; the app itself opens nothing and reads no environment, so the same app runs over
any store, with a fixed clock and counting ids in tests, and wall time and uuid4 in production.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from reference_impl.adapters.rate_limit import RateLimiter
from reference_impl.service.payments import PaymentsConfig
from reference_impl.service.ports import Clock, Store


@dataclass(frozen=True, slots=True)
class GatewayDeps:
    store: Store
    api_keys: Mapping[str, str]
    """API key -> tenant. A tenant may have several keys; a key has exactly one tenant."""
    clock: Clock
    new_id: Callable[[], str]
    """Fresh ids for payments and for accounts created without one (uuid4 hex in production)."""
    rate_limiter: RateLimiter
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    operator_keys: frozenset[str] = frozenset()
    """Keys that may review held payments (`X-Operator-Key`); none: reviews are refused."""
    notify: Callable[[], None] | None = None
    """Called on the event loop after a new payment commits (not on a replay), so the runtime
    can wake its payments workers instead of letting them wait for their next poll. It must not
    block."""
    registry: CollectorRegistry | None = None
    """Where /metrics collects from; None gives the app a registry of its own. The runtime passes
    its registry so its queue-lag collectors are exported next to the gateway's."""
    metrics_dir: str | None = None
    """prometheus_client's multiprocess directory, when several processes serve one gateway:
    /metrics then merges every process's counters from it (and still exports `registry`), so
    one scrape shows the whole service whichever process answers. PROMETHEUS_MULTIPROC_DIR
    must name the same directory before prometheus_client is imported (the runtime's
    supervisor sets it for every process it starts)."""
    store_thread: bool = False
    """Run a `Store.serial` store's units of work on one thread of the gateway's own instead of
    the threadpool (api/store_thread.py). For a process in which nothing else takes the store's
    lock: the runtime's gateway processes under `--workers`. In one process with the workers'
    threads it cost throughput (docs/serve.md), so it is off unless asked for."""
    poll_interval: float = 0.05
    """Seconds between store reads while GET /v1/payments/{id}?wait=... long-polls."""
    max_wait: float = 30.0
    """The largest `wait` a client may ask for, in seconds."""
