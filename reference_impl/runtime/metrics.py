"""Worker-side metrics for /metrics: queue lag per consumer group and payments by status.

Both are read from the store at scrape time (not kept in memory), so every gateway process
reports the same numbers whichever process runs the workers. Payments by status come from the
projector's read model, not from scanning the payment table, so a scrape costs a few rows;
they trail the log by the reporting group's lag, which is exported next to them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

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
    ) -> None:
        self._store = store
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
                for group, topics in GROUP_TOPICS.items():
                    lag.add_metric([group], group_lag(uow, group, topics, self._partitions))
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
        """Counters of the consumers running in this process (none in a gateway-only one)."""
        events = CounterMetricFamily(
            "testbed_worker_events",
            "Events committed by consumers in this process.",
            labels=["group"],
        )
        failures = CounterMetricFamily(
            "testbed_worker_failures", "Failed batch or event attempts (retried).", labels=["group"]
        )
        compensated = CounterMetricFamily(
            "testbed_worker_compensations",
            "Events given up after retries and compensated (payment failed).",
            labels=["group"],
        )
        for loop in self._loops:
            for m in loop.members:
                events.add_metric([m.spec.name], m.stats.events)
                failures.add_metric([m.spec.name], m.stats.failures)
                compensated.add_metric([m.spec.name], m.stats.compensated)
        yield events
        yield failures
        yield compensated
