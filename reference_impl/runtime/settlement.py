"""The settlement worker's loop: the "settlement" consumer plus its two clocks.

One thread, one writer: the consumer (posted payments join open batches), the cut-off (close,
net and send every open batch each `cutoff` seconds) and statement ingestion (reconcile each
statement the partner has made due) all touch the same partner-wide records, so they run on one
loop over all partitions instead of taking locks.

The bank partner is the in-process `BankPartnerSimulator`, a perfect partner whose "day" lasts
`partner_day` seconds so statements arrive within a run. A statement fetched from it is kept until
its ingestion commits, because the simulator hands each statement out only once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from reference_impl.adapters.bank_partner import BankPartnerSimulator, PartnerBehaviour
from reference_impl.core.settlement import Statement
from reference_impl.runtime.consumer import Consumer
from reference_impl.runtime.wakeup import Wakeup
from reference_impl.runtime.workers import Periodic, WorkerConfig, WorkerLoop
from reference_impl.service.ports import Clock, LoggedEvent, Store, UnitOfWork
from reference_impl.service.settlement import (
    SETTLEMENT_GROUP,
    SettlementConfig,
    close_batches,
    handle_settlement_events,
    ingest_statement,
)

log = logging.getLogger(__name__)

STATEMENT_POLL_S = 1.0


class StatementIngestion:
    """Fetch due statements and reconcile each in its own unit of work, keeping failures."""

    def __init__(
        self, store: Store, partners: Sequence[BankPartnerSimulator], config: SettlementConfig
    ) -> None:
        self._store = store
        self._partners = partners
        self._config = config
        self._pending: list[Statement] = []

    def __call__(self, now: float) -> int:
        for partner in self._partners:
            self._pending.extend(partner.statements(now))
        settled = 0
        while self._pending:
            statement = self._pending[0]
            with self._store.unit_of_work() as uow:
                result = ingest_statement(uow, statement, now, self._config)
                uow.commit()
            self._pending.pop(0)
            settled += len(result.settled)
        return settled


def settlement_loop(
    store: Store,
    clock: Clock,
    config: WorkerConfig,
    wakeup: Wakeup,
    cutoff: float,
    partner_day: float,
) -> WorkerLoop:
    settlement = SettlementConfig(partitions=config.payments.partitions)
    partners = [
        BankPartnerSimulator(name, PartnerBehaviour(), random.Random(name), day_length=partner_day)
        for name in settlement.partners
    ]

    def handle(uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> int:
        handle_settlement_events(uow, events, now, settlement)
        return 0

    def cut_off(now: float) -> int:
        for partner in partners:
            with store.unit_of_work() as uow:
                close_batches(uow, now, partner, settlement)
                uow.commit()
        return 0

    consumer = Consumer(
        store,
        SETTLEMENT_GROUP,
        range(settlement.partitions),
        handle,
        clock,
        batch_size=config.batch_size,
        retry=config.retry,
    )
    now = clock.now()
    periodic = [
        Periodic("cut-off", cutoff, cut_off, next_at=now + cutoff),
        Periodic("statements", STATEMENT_POLL_S, StatementIngestion(store, partners, settlement)),
    ]
    return WorkerLoop("settlement", [consumer], wakeup, clock, config.idle_wait, periodic)
