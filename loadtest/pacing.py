"""The open-model schedule: when each payment is meant to be sent, and what it asks for.

The load runtime must offer a scenario the same traffic the sim offers (sim/clients.py), so this is
the sim's client model without SimPy, on the same draws (scenarios/workload.py): Poisson arrivals
whose rate follows the profile steps plus the bursts (at a rate change the next gap is redrawn:
memorylessness), a tenant drawn uniformly, a Zipf-skewed debtor and creditor, an amount from the
scenario's distribution, and now and then a deliberate double submit. The draws come from one
`random.Random` in the sim's order, so one generator seeded like the sim's "arrivals" stream
schedules the very requests the sim makes. Several generator processes each run a `share` of the
rate from streams of their own: independent Poisson processes add up to one.

Pure (stdlib only): the Locust side runs it in each generator process, tests run it bare.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from scenarios.schema import Workload
from scenarios.workload import (
    ZipfAccounts,
    account_ids,
    draw_amount,
    rate_segments,
    tenant_ids,
)

FUNDING_ACCOUNT = "funding"
"""Each tenant's overdraft account that the set-up funds every other account from (as the sim)."""


def arrivals_seed(seed: int, process: int, processes: int) -> str:
    """The seed of one generator process's arrival stream: the sim's own for a single process."""
    return f"{seed}/arrivals" if processes == 1 else f"{seed}/arrivals/{process}-of-{processes}"


def retries_seed(seed: int, process: int, processes: int) -> str:
    """The seed of one generator process's retry-jitter stream: the sim's own for one process."""
    return f"{seed}/retries" if processes == 1 else f"{seed}/retries/{process}-of-{processes}"


@dataclass(frozen=True, slots=True)
class Arrival:
    """One payment a client decides to make: at `at` schedule seconds from the traffic start."""

    at: float
    tenant: str
    debtor: str
    creditor: str
    amount: int
    currency: str
    duplicate: bool
    """A double submit: the same key and body sent twice at the same moment."""


def arrivals(
    workload: Workload, duration: float, rng: random.Random, share: float = 1.0
) -> Iterator[Arrival]:
    """The schedule of [0, duration) in time order, at `share` of the workload's rate."""
    tenants = tenant_ids(workload.tenants)
    accounts = account_ids(workload.accounts)
    zipf = ZipfAccounts(workload.accounts, workload.zipf)
    duplicates = workload.client.duplicate_probability
    now = 0.0
    for start, end, rate in rate_segments(workload, duration):
        if now < start:
            now += start - now  # the sim's clock moves exactly this way (env.timeout)
        rate *= share
        if rate <= 0:
            continue
        while True:
            gap = rng.expovariate(rate)
            if now + gap >= end:
                break
            now += gap
            tenant = tenants[rng.randrange(len(tenants))]
            debtor, creditor = zipf.pair(rng)
            amount = draw_amount(workload.amount, rng)
            duplicate = bool(duplicates) and rng.random() < duplicates
            yield Arrival(
                now, tenant, accounts[debtor], accounts[creditor], amount, workload.currency,
                duplicate,
            )  # fmt: skip
