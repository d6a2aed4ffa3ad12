"""Benchmark: what the payments handler spends per event type, the source of `light_weight`.
`python -m sim.bench_event_costs [--payments N]`.

The sim charges each handled event of the payments group `payments_batch.per_item`, except, with
the checks in parallel, its PaymentReceived and CheckDecided events, which it charges
`light_weight` of that (sim/service_times.py). This times the real handler
(`handle_payment_events`, memory store, best of 5 batches of N events each, rolled back) on
each kind of event:

- PaymentReceived with the checks off: screened and reserved (the baseline: a full item);
- PaymentReceived with the checks in parallel: screened, then left waiting for the decisions;
- CheckDecided that leaves the payment's decisions incomplete (the first of three);
- CheckDecided that completes them: the payment is reserved.

and prints each per event against the baseline, the average CheckDecided (one in three
completes a payment's set), and `light_weight` beside them. A measurement that the constant is read
from, not a target: it exits 0.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.checks import Decision
from reference_impl.core.events import DECISIONS_TOPIC, PAYMENTS_TOPIC
from reference_impl.core.ledger import Account, Transfer
from reference_impl.core.payments import Payment
from reference_impl.core.screening import ScreeningRules
from reference_impl.service.accept import PaymentRequest, accept_payment
from reference_impl.service.checks import CHECKS, ChecksConfig
from reference_impl.service.compliance import handle_check_events
from reference_impl.service.ledger import create_accounts, submit_transfers
from reference_impl.service.payments import PaymentsConfig, handle_payment_events
from reference_impl.service.ports import LoggedEvent, UnitOfWork
from sim.service_times import DEFAULTS

T0 = 1_700_000_000.0
PARTITIONS = 4


@dataclass(frozen=True, slots=True)
class Approves:
    """A check that approves everything: its own cost is not what is measured here."""

    name: str

    def decide(self, uow: UnitOfWork, payment: Payment, now: float) -> Decision:
        return Decision("approve")


def _bank(n: int, config: PaymentsConfig) -> MemoryStore:
    store = MemoryStore()
    accounts = [Account("funding", "EUR", overdraft=True)]
    accounts += [Account(f"a{i}", "EUR") for i in range(20)]
    create_accounts(store, "acme", accounts)
    funding = [Transfer(f"f{i}", "funding", f"a{i}", 10**9, "EUR") for i in range(20)]
    submit_transfers(store, "acme", funding, T0)
    with store.unit_of_work() as uow:
        for i in range(n):
            req = PaymentRequest(f"a{i % 20}", f"a{(i + 1) % 20}", 100, "EUR")
            accept_payment(uow, "acme", f"k{i}", req, f"h{i}", f"p{i}", T0, config)
        uow.commit()
    return store


def _events(store: MemoryStore, topic: str, after: Sequence[LoggedEvent] = ()) -> list[LoggedEvent]:
    seen = {(e.partition, e.offset) for e in after}
    with store.unit_of_work() as uow:
        found = [e for p in range(PARTITIONS) for e in uow.read_events(topic, p, 0, 10**9)]
    return [e for e in found if (e.partition, e.offset) not in seen]


def _per_event(store: MemoryStore, events: list[LoggedEvent], config: PaymentsConfig) -> float:
    """Seconds per event of the handler on `events`, best of 5 (each rolled back)."""
    best = float("inf")
    for _ in range(5):
        with store.unit_of_work() as uow:
            started = time.perf_counter()
            handle_payment_events(uow, events, ScreeningRules(), T0 + 1, config)
            best = min(best, time.perf_counter() - started)
            uow.rollback()
    return best / len(events)


def _decide(uow: UnitOfWork, events: list[LoggedEvent], checker: Approves) -> object:
    return handle_check_events(uow, events, checker, T0, PARTITIONS)


def _commit(store: MemoryStore, fn: Callable[[UnitOfWork], object]) -> None:
    with store.unit_of_work() as uow:
        fn(uow)
        uow.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bench_event_costs", description=__doc__)
    parser.add_argument("--payments", type=int, default=400, help="events per batch (400)")
    args = parser.parse_args(argv)
    if args.payments < 1:
        parser.error("--payments: must be at least 1")
    n = args.payments

    off = PaymentsConfig(partitions=PARTITIONS)
    store = _bank(n, off)
    received_off = _per_event(store, _events(store, PAYMENTS_TOPIC), off)

    parallel = PaymentsConfig(partitions=PARTITIONS, checks=ChecksConfig("parallel", CHECKS))
    store = _bank(n, parallel)
    received = _events(store, PAYMENTS_TOPIC)
    received_parallel = _per_event(store, received, parallel)
    _commit(store, lambda uow: handle_payment_events(uow, received, ScreeningRules(), T0, parallel))
    checkers = [Approves(name) for name in CHECKS]
    for checker in checkers[:-1]:  # every payment misses its last decision
        _commit(store, partial(_decide, events=received, checker=checker))
    incomplete = [e for e in _events(store, DECISIONS_TOPIC) if e.type == "CheckDecided"][:n]
    looked_up = _per_event(store, incomplete, parallel)
    before = _events(store, DECISIONS_TOPIC)
    last = checkers[-1]
    _commit(store, partial(_decide, events=received, checker=last))
    completing = _per_event(store, _events(store, DECISIONS_TOPIC, before), parallel)

    average = ((len(CHECKS) - 1) * looked_up + completing) / len(CHECKS)
    for label, seconds in (
        ("PaymentReceived, checks off (screen, reserve)", received_off),
        ("PaymentReceived, checks parallel (screen, wait)", received_parallel),
        ("CheckDecided, set still incomplete", looked_up),
        ("CheckDecided, completing the set (reserve)", completing),
        (f"CheckDecided, average (1 in {len(CHECKS)} completes)", average),
    ):
        print(f"{label:50} {seconds * 1e6:7.1f} us  {seconds / received_off:5.2f}x")
    print(
        f"light events against a PaymentReceived with the checks off: received "
        f"{received_parallel / received_off:.2f}, decisions on average {average / received_off:.2f}"
        f"; the sim charges both light_weight {DEFAULTS.light_weight:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
