"""Periodic upkeep run by a worker loop: purging expired idempotency records.

The sweep visits every tenant's idempotency keys a page at a time, one unit of work per page,
and remembers where it stopped, so each run costs at most `PAGES_PER_RUN` pages per tenant and a
full cycle over a day's keys spreads across many runs. It runs on the reporting loop (one per
deployment, in-process or as its own process), between that loop's batches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reference_impl.runtime.workers import Periodic
from reference_impl.service.idempotency import purge_expired
from reference_impl.service.ports import Store

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 10.0
PAGES_PER_RUN = 5


def idempotency_purge(
    store: Store, tenants: Sequence[str], interval: float = PURGE_INTERVAL_S
) -> Periodic:
    """A Periodic that deletes expired idempotency records of `tenants`."""
    cursors = dict.fromkeys(tenants, "")

    def run(now: float) -> int:
        purged = 0
        for tenant in cursors:
            for _ in range(PAGES_PER_RUN):
                with store.unit_of_work() as uow:
                    cursor, n = purge_expired(uow, tenant, cursors[tenant], now)
                    uow.commit()
                cursors[tenant] = cursor
                purged += n
                if not cursor:  # back at the first key: the rest waits for the next run
                    break
        if purged:
            log.info("purged %d expired idempotency records", purged)
        return 0  # appends no events

    return Periodic("idempotency-purge", interval, run)
