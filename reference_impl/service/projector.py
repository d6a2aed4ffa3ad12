"""The "reporting" consumer: CQRS read models rebuilt from the event log, and their check.

Reads (dashboards, /metrics) must not scan the ledger or the payment table, so the projector
folds the payment events into three small read models per tenant, stored as records in the same
unit of work as its consumer offset (so a redelivered batch is never counted twice):

- balances: per account, what posted payments moved (debits and credits, minor units);
- daily volume: per UTC day and currency, the count and amount of posted payments;
- payments by status: how many payments are in each saga state.

The read models are shared across partitions (a creditor is credited from any debtor's
partition), so the reporting group is exclusive: one member holds every partition at a time, the
read-modify-write of a record needs no lock, and other members stand by. The read models add up
deltas, so the order between topics (a settlement seen before its posting) does not matter.

`check_read_models` proves the projection right: it replays the events up to the committed
offsets into a fresh projection and, once the projector has caught up, compares balances with a
replay of the journal's payment postings and the status counts with the payment records.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reference_impl.core.events import (
    EVENT_TYPES,
    OUTCOMES_TOPIC,
    PAYMENTS_TOPIC,
    SETTLEMENTS_TOPIC,
    PaymentEvent,
    PaymentFailed,
    PaymentHeld,
    PaymentPosted,
    PaymentReceived,
    PaymentRejected,
    PaymentReserved,
    PaymentReviewed,
    PaymentSettled,
    decode,
)
from reference_impl.core.ledger import TransferKind
from reference_impl.core.payments import Payment, PaymentStatus
from reference_impl.core.serial import Memo, dumps
from reference_impl.service.payments import PAYMENT
from reference_impl.service.ports import LoggedEvent, UnitOfWork

REPORTING_GROUP = "reporting"
REPORTING_TOPICS = (PAYMENTS_TOPIC, OUTCOMES_TOPIC, SETTLEMENTS_TOPIC)
"""Not the checks' decisions: the read models count payments, and a decision moves none."""
REPORTING_HANDLES = frozenset(EVENT_TYPES)
BALANCE = "rm_balance"
VOLUME = "rm_volume"
STATUS = "rm_status"
_STATUS_KEY = "all"

Counts = dict[str, int]


@dataclass(slots=True)
class Projection:
    """Deltas (or, from empty, whole read models) keyed by tenant; pure, no I/O."""

    balances: dict[str, dict[str, Counts]] = field(default_factory=lambda: defaultdict(dict))
    """tenant -> account -> {"debits": n, "credits": n}; the currency is in `currencies`."""
    currencies: dict[tuple[str, str], str] = field(default_factory=dict)
    volumes: dict[str, dict[str, Counts]] = field(default_factory=lambda: defaultdict(dict))
    """tenant -> "YYYY-MM-DD/CUR" -> {"count": n, "amount": n}."""
    statuses: dict[str, Counts] = field(default_factory=lambda: defaultdict(dict))
    """tenant -> status -> n."""

    def apply(self, event: PaymentEvent, failed_from_reserved: bool = False) -> None:
        """Fold one event in. `failed_from_reserved` says which state a PaymentFailed left."""
        t = event.tenant
        match event:
            case PaymentReceived():
                self._move(t, None, PaymentStatus.RECEIVED)
            case PaymentReserved():
                self._move(t, PaymentStatus.RECEIVED, PaymentStatus.RESERVED)
            case PaymentRejected():
                # Screening and the reservation both decide in the commit that leaves RECEIVED.
                self._move(t, PaymentStatus.RECEIVED, PaymentStatus.REJECTED)
            case PaymentPosted():
                self._move(t, PaymentStatus.RESERVED, PaymentStatus.POSTED)
                self._post(event)
            case PaymentSettled():
                self._move(t, PaymentStatus.POSTED, PaymentStatus.SETTLED)
            case PaymentHeld():
                self._move(t, PaymentStatus.RECEIVED, PaymentStatus.HELD)
            case PaymentReviewed():
                # Back in the flow: the reservation or the rejection that follows moves it on.
                self._move(t, PaymentStatus.HELD, PaymentStatus.RECEIVED)
            case PaymentFailed():
                before = PaymentStatus.RESERVED if failed_from_reserved else PaymentStatus.RECEIVED
                self._move(t, before, PaymentStatus.FAILED)

    def _move(self, tenant: str, old: PaymentStatus | None, new: PaymentStatus) -> None:
        counts = self.statuses[tenant]
        if old is not None:
            counts[old.value] = counts.get(old.value, 0) - 1
        counts[new.value] = counts.get(new.value, 0) + 1

    def _post(self, e: PaymentPosted) -> None:
        accounts = self.balances[e.tenant]
        for account, side in ((e.debtor_account, "debits"), (e.creditor_account, "credits")):
            row = accounts.setdefault(account, {"debits": 0, "credits": 0})
            row[side] += e.amount
            self.currencies[(e.tenant, account)] = e.currency
        day = datetime.fromtimestamp(e.at, UTC).date().isoformat()
        vol = self.volumes[e.tenant].setdefault(f"{day}/{e.currency}", {"count": 0, "amount": 0})
        vol["count"] += 1
        vol["amount"] += e.amount


def _failed_from_reserved(uow: UnitOfWork, event: PaymentFailed) -> bool:
    # A payment reaches RESERVED in the same commit that writes its reservation, so the
    # reservation's existence says which state the failure left.
    reserve = f"{event.payment_id}:reserve"
    return reserve in uow.get_transfers(event.tenant, [reserve])


def project(uow: UnitOfWork, events: Iterable[LoggedEvent], into: Projection) -> None:
    for logged in events:
        event = decode(logged.type, logged.payload)
        from_reserved = isinstance(event, PaymentFailed) and _failed_from_reserved(uow, event)
        into.apply(event, from_reserved)


_ROWS: Memo[str, dict[str, int | str]] = Memo(1 << 13)
"""Read-model rows by their text: each batch rewrites the rows the one before wrote (a copy is
taken before changing one)."""


def _add(uow: UnitOfWork, kind: str, tenant: str, key: str, delta: Counts, **labels: str) -> None:
    """Read-modify-write of one record: add the counters, set the labels."""
    text = uow.get_record(kind, tenant, key)
    row: dict[str, int | str] = {}
    if text is not None:
        known = _ROWS.get(text)
        row = dict(known) if known is not None else json.loads(text)
    for name, n in delta.items():
        old = row.get(name, 0)
        row[name] = (old if isinstance(old, int) else 0) + n
    row.update(labels)
    text = dumps(row)
    _ROWS.put(text, row)
    uow.put_record(kind, tenant, key, text)


def handle_reporting_events(uow: UnitOfWork, events: Sequence[LoggedEvent]) -> list[PaymentEvent]:
    """Fold a batch of events into the read models (emits nothing).

    The consumer engine commits it with the offsets, so each event counts exactly once.
    """
    if not events:
        return []
    delta = Projection()
    project(uow, events, delta)
    for tenant, accounts in delta.balances.items():
        for account, row in accounts.items():
            currency = delta.currencies[(tenant, account)]
            _add(uow, BALANCE, tenant, account, row, currency=currency)
    for tenant, volumes in delta.volumes.items():
        for key, row in volumes.items():
            _add(uow, VOLUME, tenant, key, row)
    for tenant, counts in delta.statuses.items():
        _add(uow, STATUS, tenant, _STATUS_KEY, counts)
    return []


# -- reading ----------------------------------------------------------------------------------


def _all_records(uow: UnitOfWork, kind: str, tenant: str) -> dict[str, dict[str, int | str]]:
    out: dict[str, dict[str, int | str]] = {}
    after = ""
    while page := uow.list_records(kind, tenant, after, 1000):
        for key, value in page:
            out[key] = json.loads(value)
        after = page[-1][0]
    return out


@dataclass(frozen=True, slots=True)
class ReadModels:
    """One tenant's read models as stored."""

    balances: dict[str, dict[str, int | str]]
    volumes: dict[str, dict[str, int | str]]
    statuses: dict[str, int]


def read_models(uow: UnitOfWork, tenant: str) -> ReadModels:
    statuses = _all_records(uow, STATUS, tenant).get(_STATUS_KEY, {})
    return ReadModels(
        _all_records(uow, BALANCE, tenant),
        _all_records(uow, VOLUME, tenant),
        {k: v for k, v in statuses.items() if isinstance(v, int) and v},
    )


def group_lag(
    uow: UnitOfWork, group: str, topics: Sequence[str], partitions: int, cap: int = 10_000
) -> int:
    """Events of `topics` the group has not committed yet (each partition's count capped)."""
    return sum(
        len(uow.read_events(t, p, uow.get_offset(group, t, p), cap))
        for t in topics
        for p in range(partitions)
    )


# -- checking ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadModelCheck:
    lag: int
    """Events not yet projected; the journal and payment comparisons ran only when 0."""
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _replay_events(uow: UnitOfWork, partitions: int) -> Projection:
    fresh = Projection()
    for t in REPORTING_TOPICS:
        for p in range(partitions):
            upto = uow.get_offset(REPORTING_GROUP, t, p)
            after = 0
            while after < upto and (page := uow.read_events(t, p, after, min(1000, upto - after))):
                project(uow, page, fresh)
                after = page[-1].offset
    return fresh


def _as_models(p: Projection, tenant: str) -> ReadModels:
    balances: dict[str, dict[str, int | str]] = {
        account: {"currency": p.currencies[(tenant, account)], **row}
        for account, row in p.balances.get(tenant, {}).items()
    }
    volumes: dict[str, dict[str, int | str]] = {
        key: dict(row) for key, row in p.volumes.get(tenant, {}).items()
    }
    statuses = {k: v for k, v in p.statuses.get(tenant, {}).items() if v}
    return ReadModels(balances, volumes, statuses)


def _journal_balances(uow: UnitOfWork, tenant: str) -> dict[str, dict[str, int | str]]:
    """What payments moved per account, replayed from the journal's post_pending entries."""
    out: dict[str, dict[str, int | str]] = {}
    after = 0
    while entries := uow.read_journal(tenant, after, 1000):
        for e in entries:
            if e.kind == TransferKind.POST_PENDING.value and e.payment_id:
                for account, side in ((e.debit_account, "debits"), (e.credit_account, "credits")):
                    row = out.setdefault(
                        account, {"currency": e.currency, "debits": 0, "credits": 0}
                    )
                    n = row[side]
                    row[side] = (n if isinstance(n, int) else 0) + e.amount
        after = entries[-1].seq
    return out


def _payment_statuses(uow: UnitOfWork, tenant: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    after = ""
    while page := uow.list_records(PAYMENT, tenant, after, 1000):
        for _, value in page:
            status = Payment.from_json(value).status.value
            counts[status] = counts.get(status, 0) + 1
        after = page[-1][0]
    return counts


def _diff(name: str, stored: object, expected: object) -> list[str]:
    if stored == expected:
        return []
    return [f"{name}: read model {stored!r} != replay {expected!r}"]


def check_read_models(uow: UnitOfWork, tenants: Sequence[str], partitions: int) -> ReadModelCheck:
    """Compare the stored read models with replays, in one consistent unit of work.

    Always: stored == a fresh projection of the events up to the committed offsets. When the
    projector has caught up (lag 0): balances == the journal's payment postings replayed, and
    status counts == the payment records counted.
    """
    replay = _replay_events(uow, partitions)
    lag = group_lag(uow, REPORTING_GROUP, REPORTING_TOPICS, partitions)
    problems: list[str] = []
    for tenant in tenants:
        stored = read_models(uow, tenant)
        expected = _as_models(replay, tenant)
        problems += _diff(f"{tenant} balances (events)", stored.balances, expected.balances)
        problems += _diff(f"{tenant} daily volume (events)", stored.volumes, expected.volumes)
        problems += _diff(f"{tenant} statuses (events)", stored.statuses, expected.statuses)
        if lag == 0:
            journal = _journal_balances(uow, tenant)
            problems += _diff(f"{tenant} balances (journal)", stored.balances, journal)
            counted = _payment_statuses(uow, tenant)
            problems += _diff(f"{tenant} statuses (payments)", stored.statuses, counted)
    return ReadModelCheck(lag, problems)
