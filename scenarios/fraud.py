"""Labelled fraud in the workload: the `workload.fraud` section and the payments it injects.

A check (sanctions, AML, fraud score) is only as good as the cases it is measured on, so the
workload can mix known fraud patterns into the legitimate traffic and record which requests
they were (the run record's `labels` table). Each pattern arrives as incidents (cases) at its
own Poisson `rate`; one incident is a handful of payments shaped like the pattern:

- `account_takeover`: a burst from one victim account to payees it has rarely or never paid
  (the least popular tenth of the accounts), larger than its usual payments, within minutes;
- `mule_chain`: money hops A -> B -> C -> D within minutes, each mule passing on a little less;
- `structuring`: many payments from one account just under a reporting threshold;
- `card_testing`: a flood of tiny amounts from one account to many payees within seconds;
- `sanctioned_payee`: payments to a payee named as a variant of a watch-list party.

`fraud_schedule` draws the incidents from a random stream of their own (the sim's "fraud"
stream), so the legitimate draws are the same with and without fraud; both runtimes send the
schedule, and the fraud model's trainer draws its data from it too. Pure: values in, values out.
Lives apart from schema.py (which re-exports the models) because it is a format and a
generator of its own.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reference_impl.compliance.sanctions import load_watchlist
from reference_impl.compliance.sanctions_list import name_variant, person_name
from scenarios.units import Duration, Rate
from scenarios.workload import ZipfAccounts, account_ids, draw_amount, tenant_ids

if TYPE_CHECKING:
    from scenarios.schema import Workload

Pattern = Literal[
    "account_takeover", "mule_chain", "structuring", "card_testing", "sanctioned_payee"
]
PATTERNS: tuple[Pattern, ...] = (
    "account_takeover", "mule_chain", "structuring", "card_testing", "sanctioned_payee",
)  # fmt: skip
"""In the order the schedule seeds their streams (a new pattern goes last: the others keep
their draws)."""
UNKNOWN_PATTERN = f"unknown fraud pattern; known: {', '.join(PATTERNS)} (and the switch names)"
NEW_PAYEES = 0.1
"""Takeover and sanctioned payees come from this least popular share of the accounts."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Incidents(_Model):
    rate: Rate = Field(description="incidents (cases) per second, Poisson, e.g. '2/min'")


class AccountTakeover(_Incidents):
    """A burst from one victim account to new payees, larger than its usual payments."""

    payments: int = Field(default=5, ge=1, le=100, description="payments in the burst")
    within: Duration = Field(default=300.0, gt=0, description="the burst's span")
    factor: float = Field(
        default=10.0, ge=1, le=10_000, description="amounts: a workload amount times this"
    )


class MuleChain(_Incidents):
    """Money hopping through `hops` payments, each mule keeping a little."""

    hops: int = Field(default=3, ge=1, le=20, description="payments in the chain (A->B->C->D: 3)")
    gap: Duration = Field(
        default=120.0, gt=0, description="longest wait of a mule before passing the money on"
    )
    factor: float = Field(
        default=20.0, ge=1, le=10_000, description="first hop: a workload amount times this"
    )
    skim: float = Field(
        default=0.05, gt=0, lt=1, description="most a mule keeps, as a fraction of what came in"
    )


class Structuring(_Incidents):
    """Many payments from one account just under a reporting threshold."""

    payments: int = Field(default=10, ge=2, le=1000)
    threshold: int = Field(default=1_000_000, ge=2, description="minor units (10,000.00 EUR)")
    margin: float = Field(
        default=0.05, gt=0, lt=1, description="amounts in [threshold * (1 - margin), threshold)"
    )
    within: Duration = Field(default=3600.0, gt=0, description="the incident's span")

    @model_validator(mode="after")
    def _band_holds_an_amount(self) -> Structuring:
        if _low(self) >= self.threshold:
            raise ValueError("margin: [threshold * (1 - margin), threshold) holds no amount")
        return self


class CardTesting(_Incidents):
    """A flood of tiny amounts from one account to many payees."""

    payments: int = Field(default=50, ge=1, le=10_000)
    within: Duration = Field(default=10.0, gt=0, description="the flood's span")
    min: int = Field(default=1, ge=1, description="smallest amount, minor units")
    max: int = Field(default=200, ge=1, description="largest amount, minor units")

    @model_validator(mode="after")
    def _ordered(self) -> CardTesting:
        if self.min > self.max:
            raise ValueError("min: must not exceed max")
        return self


class SanctionedPayee(_Incidents):
    """Payments to a new payee whose name is a variant of a watch-list party's."""

    payments: int = Field(default=1, ge=1, le=100, description="payments to that payee")
    within: Duration = Field(default=600.0, gt=0, description="the incident's span")


class Fraud(_Model):
    """`workload.fraud`: the patterns to inject (absent: none) and whether names are sent."""

    names: bool = Field(
        default=True,
        description="legit payments carry the holders' names (debtor_name, creditor_name); "
        "false: only sanctioned_payee payments carry a name",
    )
    account_takeover: AccountTakeover | None = None
    mule_chain: MuleChain | None = None
    structuring: Structuring | None = None
    card_testing: CardTesting | None = None
    sanctioned_payee: SanctionedPayee | None = None


def _low(s: Structuring) -> int:
    return math.ceil(s.threshold * (1 - s.margin))


def fraud_problems(fraud: Fraud, accounts: int, initial_balance: int) -> list[str]:
    """What the workload cannot do for these patterns, one line each (field first)."""
    problems = []
    if fraud.mule_chain is not None and fraud.mule_chain.hops + 1 > accounts:
        hops = fraud.mule_chain.hops
        problems.append(
            f"fraud.mule_chain.hops: a chain of {hops} hops needs {hops + 1} accounts, "
            f"the workload has {accounts}"
        )
    s = fraud.structuring
    if s is not None and s.payments * (s.threshold - 1) > initial_balance:
        problems.append(
            f"fraud.structuring: {s.payments} payments just under {s.threshold} need up to "
            f"{s.payments * (s.threshold - 1)} minor units, more than initial_balance "
            f"{initial_balance}"
        )
    return problems


# -- the schedule ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FraudPayment:
    """One fraudulent payment: at `at` seconds of the schedule, part of incident `case`."""

    at: float
    tenant: str
    debtor: str
    creditor: str
    amount: int
    creditor_name: str
    """The name the request gives for the creditor; "" for none (`names: false`)."""
    pattern: str
    case: str
    """The incident's id (unique in the run): one case groups its payments."""


@lru_cache(maxsize=1 << 16)
def counterparty_name(tenant: str, account: str) -> str:
    """The holder's name of `account` in `tenant`, the same in every run (seeded by the ids)."""
    return person_name(random.Random(zlib.crc32(f"{tenant}/{account}".encode())))


def request_names(workload: Workload, tenant: str, debtor: str, creditor: str) -> tuple[str, str]:
    """(debtor_name, creditor_name) a legitimate payment sends: ("", "") unless `names`."""
    fraud = workload.fraud
    if fraud is None or not fraud.names:
        return "", ""
    return counterparty_name(tenant, debtor), counterparty_name(tenant, creditor)


@dataclass(frozen=True, slots=True)
class _Incident:
    """What every pattern's payments draw on: the incident's place and the workload's ids."""

    workload: Workload
    accounts: list[str]
    zipf: ZipfAccounts
    rng: random.Random
    tenant: str
    case: str
    start: float

    def pay(self, at: float, debtor: str, creditor: str, amount: int, pattern: Pattern,
            creditor_name: str | None = None) -> FraudPayment:  # fmt: skip
        if creditor_name is None:
            _, creditor_name = request_names(self.workload, self.tenant, debtor, creditor)
        return FraudPayment(self.start + at, self.tenant, debtor, creditor, amount,
                            creditor_name, pattern, self.case)  # fmt: skip

    def spread(self, count: int, within: float) -> list[float]:
        return sorted(self.rng.random() * within for _ in range(count))

    def others(self, exclude: str, count: int, pool: list[str]) -> list[str]:
        """`count` payees from `pool` other than `exclude`: distinct while the pool lasts."""
        candidates = [a for a in pool if a != exclude]
        drawn = self.rng.sample(candidates, min(count, len(candidates)))
        return [drawn[i % len(drawn)] for i in range(count)]

    def new_payees(self, exclude: str, count: int) -> list[str]:
        n = len(self.accounts)
        tail = self.accounts[n - min(n - 1, max(count + 1, round(n * NEW_PAYEES))) :]
        return self.others(exclude, count, tail)

    def larger(self, factor: float, cap: int) -> int:
        return max(1, min(cap, round(draw_amount(self.workload.amount, self.rng) * factor)))


def _account_takeover(spec: AccountTakeover, d: _Incident) -> list[FraudPayment]:
    victim = d.accounts[d.zipf.draw(d.rng)]
    payees = d.new_payees(victim, spec.payments)
    cap = d.workload.initial_balance // spec.payments
    return [
        d.pay(at, victim, payee, d.larger(spec.factor, cap), "account_takeover")
        for at, payee in zip(d.spread(spec.payments, spec.within), payees, strict=True)
    ]


def _mule_chain(spec: MuleChain, d: _Incident) -> list[FraudPayment]:
    chain = d.rng.sample(d.accounts, spec.hops + 1)
    amount = max(spec.hops + 1, d.larger(spec.factor, d.workload.initial_balance))
    at, out = 0.0, []
    for hop in range(spec.hops):
        if hop:
            at += spec.gap * (0.1 + 0.9 * d.rng.random())
            amount -= min(amount - 1, max(1, round(amount * spec.skim * d.rng.random())))
        out.append(d.pay(at, chain[hop], chain[hop + 1], amount, "mule_chain"))
    return out


def _structuring(spec: Structuring, d: _Incident) -> list[FraudPayment]:
    debtor = d.accounts[d.rng.randrange(len(d.accounts))]
    payees = d.others(debtor, spec.payments, d.accounts)
    low, high = _low(spec), spec.threshold - 1
    return [
        d.pay(at, debtor, payee, d.rng.randint(low, high), "structuring")
        for at, payee in zip(d.spread(spec.payments, spec.within), payees, strict=True)
    ]


def _card_testing(spec: CardTesting, d: _Incident) -> list[FraudPayment]:
    debtor = d.accounts[d.rng.randrange(len(d.accounts))]
    payees = d.others(debtor, spec.payments, d.accounts)
    return [
        d.pay(at, debtor, payee, d.rng.randint(spec.min, spec.max), "card_testing")
        for at, payee in zip(d.spread(spec.payments, spec.within), payees, strict=True)
    ]


def _sanctioned_payee(spec: SanctionedPayee, d: _Incident) -> list[FraudPayment]:
    entry = d.rng.choice(_watchlist_names())
    listed = d.rng.choice(entry)
    name = name_variant(listed, d.rng)
    debtor = d.accounts[d.zipf.draw(d.rng)]
    [payee] = d.new_payees(debtor, 1)
    return [
        d.pay(at, debtor, payee, draw_amount(d.workload.amount, d.rng), "sanctioned_payee", name)
        for at in d.spread(spec.payments, spec.within)
    ]


@lru_cache(maxsize=1)
def _watchlist_names() -> list[tuple[str, ...]]:
    """Per listed party, its name and aliases, in the list's order."""
    return [(e.name, *e.aliases) for e in load_watchlist().entries]


def fraud_schedule(workload: Workload, duration: float, rng: random.Random) -> list[FraudPayment]:
    """The fraud of [0, duration) in time order: per pattern, incidents at its rate, each in a
    tenant drawn uniformly; an incident's payments past `duration` are left out (the incident
    is cut short with the traffic). Each pattern draws from a stream of its own seeded from
    `rng`, so changing one pattern leaves the others' payments as they were."""
    fraud = workload.fraud
    if fraud is None:
        return []
    tenants = tenant_ids(workload.tenants)
    accounts = account_ids(workload.accounts)
    zipf = ZipfAccounts(workload.accounts, workload.zipf)
    # A stream per pattern, all seeded first: a pattern's knobs do not move another's draws.
    streams = {pattern: random.Random(rng.getrandbits(64)) for pattern in PATTERNS}
    out: list[FraudPayment] = []
    for pattern in PATTERNS:
        spec = getattr(fraud, pattern)
        if spec is None or spec.rate <= 0:
            continue
        rng = streams[pattern]
        start, n = 0.0, 0
        while (start := start + rng.expovariate(spec.rate)) < duration:
            n += 1
            tenant = tenants[rng.randrange(len(tenants))]
            d = _Incident(workload, accounts, zipf, rng, tenant, f"{pattern}-{n}", start)
            out += [p for p in _DRAW[pattern](spec, d) if p.at < duration]
    out.sort(key=lambda p: (p.at, p.case))
    return out


_DRAW: dict[str, Callable[[Any, _Incident], list[FraudPayment]]] = {
    "account_takeover": _account_takeover,
    "mule_chain": _mule_chain,
    "structuring": _structuring,
    "card_testing": _card_testing,
    "sanctioned_payee": _sanctioned_payee,
}
