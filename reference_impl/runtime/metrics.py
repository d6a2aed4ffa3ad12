"""Worker-side metrics for /metrics: queue lag per consumer group, payments by status, and
the consumers' own counters.

Lag and statuses are read from the store at scrape time (not kept in memory), so every gateway
process reports the same numbers whichever process runs the workers. Payments by status come
from the projector's read model, not from scanning the payment table, so a scrape costs a few
rows; they trail the log by the reporting group's lag, which is exported next to them.

The consumers' counters (events, failures, compensations per group) live where the consumers
run: read straight from them when the workers share the gateway's process, published through
prometheus_client's multiprocess files by each worker process otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reference_impl.service.members import GROUP_TOPICS
from reference_impl.service.ports import Store
from reference_impl.service.projector import group_lag, read_models

if TYPE_CHECKING:
    from reference_impl.runtime.consumer import ConsumerLoop

log = logging.getLogger(__name__)


class WorkerCollector(Collector):
    def __init__(
        self,
        store: Store,
        partitions: int,
        tenants: Sequence[str],
        loops: Sequence[ConsumerLoop],
        groups: Sequence[str],
    ) -> None:
        """`groups`: those the deployment runs, wherever their members are; a group it does not
        run (the checks' when they are off) has no lag to report, only a log it never reads."""
        self._store = store
        self._groups = [g for g in GROUP_TOPICS if g in groups]
        self._partitions = partitions
        self._tenants = list(tenants)
        self._loops = loops

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "testbed_queue_lag_events",
            "Events in the log not yet committed by the consumer group (per partition capped at "
            "10000, summed).",
            labels=["group"],
        )
        statuses = GaugeMetricFamily(
            "testbed_payments_by_status",
            "Payments per saga status, from the reporting read model.",
            labels=["tenant", "status"],
        )
        try:
            with self._store.unit_of_work() as uow:
                for group in self._groups:
                    lag.add_metric(
                        [group], group_lag(uow, group, GROUP_TOPICS[group], self._partitions)
                    )
                for tenant in self._tenants:
                    for status, n in sorted(read_models(uow, tenant).statuses.items()):
                        statuses.add_metric([tenant, status], n)
        except Exception as e:  # a scrape must still answer while the store is down
            log.warning("metrics: store read failed: %r", e)
        else:
            yield lag
            yield statuses
        yield from self._local()

    def _local(self) -> Iterator[Metric]:
        """Counters of the consumers running in this process; none in a gateway-only process,
        whose scrape gets the worker processes' counters from their published files instead."""
        if not self._loops:
            return
        families = {
            name: CounterMetricFamily(name, help_text, labels=["group"])
            for name, help_text, _ in WORKER_COUNTERS
        }
        for (name, group), total in worker_totals(self._loops).items():
            families[name].add_metric([group], total)
        yield from families.values()


WORKER_COUNTERS = (
    ("testbed_worker_events", "Events committed by consumers.", "events"),
    ("testbed_worker_failures", "Failed batch or event attempts (retried).", "failures"),
    (
        "testbed_worker_compensations",
        "Events given up after retries and compensated (payment failed).",
        "compensated",
    ),
)
"""(metric name, help, MemberStats field) of the per-group worker counters."""


def worker_totals(loops: Sequence[ConsumerLoop]) -> dict[tuple[str, str], int]:
    """(metric name, group) -> this process's total so far, summed over its members."""
    totals: dict[tuple[str, str], int] = {}
    for loop in loops:
        for member in loop.members:
            for name, _, stat in WORKER_COUNTERS:
                key = (name, member.spec.name)
                totals[key] = totals.get(key, 0) + getattr(member.stats, stat)
    return totals


class PublishedWorkerCounters:
    """A worker process's counters, published for the gateway processes to export.

    A worker process serves no /metrics. Under prometheus_client's multiprocess mode
    (PROMETHEUS_MULTIPROC_DIR, set by the supervisor) a Counter lives in a file of that
    directory, which every gateway process's /metrics merges; `publish()` adds what the
    consumers did since the last call. The files outlive a crashed process, so the sums never
    go backwards when a worker process is restarted.
    """

    def __init__(self, loops: Sequence[ConsumerLoop]) -> None:
        self._loops = loops
        self._counters = {
            name: Counter(name, help_text, ["group"], registry=None)
            for name, help_text, _ in WORKER_COUNTERS
        }
        self._published: dict[tuple[str, str], int] = {}

    def publish(self) -> None:
        for (name, group), total in worker_totals(self._loops).items():
            # .labels() on first sight creates the sample at 0, so an idle group still shows.
            self._counters[name].labels(group).inc(total - self._published.get((name, group), 0))
            self._published[(name, group)] = total
