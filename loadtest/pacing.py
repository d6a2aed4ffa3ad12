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

import heapq
import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from scenarios.fraud import fraud_schedule, request_names
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


def fraud_seed(seed: int) -> str:
    """The seed of the fraud schedule: the sim's "fraud" stream, the same in every process."""
    return f"{seed}/fraud"


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
    debtor_name: str = ""
    creditor_name: str = ""
    """The names the request gives ("": none, the accounts' holder names apply)."""
    pattern: str = ""
    """The fraud pattern of an injected payment ("": legitimate), and its incident."""
    case: str = ""


def arrivals(
    workload: Workload, duration: float, rng: random.Random, share: float = 1.0
) -> Iterator[Arrival]:
    """The schedule of [0, duration) in time order, at `share` of the workload's rate."""
    tenants = tenant_ids(workload.tenants)
    accounts = account_ids(workload.accounts)
    zipf = ZipfAccounts(workload.accounts, workload.zipf)
    duplicates = workload.client.duplicate_probability
    names = workload.fraud is not None and workload.fraud.names
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
            debtor_id, creditor_id = accounts[debtor], accounts[creditor]
            debtor_name, creditor_name = (
                request_names(workload, tenant, debtor_id, creditor_id) if names else ("", "")
            )
            yield Arrival(
                now, tenant, debtor_id, creditor_id, amount, workload.currency, duplicate,
                debtor_name, creditor_name,
            )  # fmt: skip


def fraud_arrivals(
    workload: Workload, duration: float, seed: int, process: int = 0, processes: int = 1
) -> list[Arrival]:
    """The fraud schedule as arrivals: the sim's, drawn from its "fraud" stream. Of several
    generator processes each sends whole incidents, those whose case id hashes to it."""
    mine = [
        p
        for p in fraud_schedule(workload, duration, random.Random(fraud_seed(seed)))
        if zlib.crc32(p.case.encode()) % processes == process
    ]
    out = []
    for p in mine:
        debtor_name, _ = request_names(workload, p.tenant, p.debtor, p.creditor)
        arrival = Arrival(
            p.at, p.tenant, p.debtor, p.creditor, p.amount, workload.currency, False,
            debtor_name, p.creditor_name, p.pattern, p.case,
        )  # fmt: skip
        out.append(arrival)
    return out


def schedule(
    workload: Workload, duration: float, seed: int, process: int = 0, processes: int = 1
) -> Iterator[Arrival]:
    """One generator process's whole schedule in time order: its share of the legitimate
    arrivals and of the fraud (a fraud payment after a legitimate one at the same instant, as
    the sim's processes run)."""
    legit = arrivals(
        workload, duration, random.Random(arrivals_seed(seed, process, processes)),
        share=1.0 / processes,
    )  # fmt: skip
    if workload.fraud is None:
        return legit
    fraud = fraud_arrivals(workload, duration, seed, process, processes)
    return heapq.merge(legit, fraud, key=lambda a: a.at)


def request_body(arrival: Arrival) -> bytes:
    """The POST /v1/payments body a client sends for `arrival` (docs/api.md)."""
    # Ids and currency are the schedule's own (`acc-NNNNNN`, ISO 4217): nothing to escape.
    # Names may hold anything (a transliteration, a quote): json writes them.
    names = ""
    if arrival.debtor_name:
        names += f',"debtor_name":{json.dumps(arrival.debtor_name)}'
    if arrival.creditor_name:
        names += f',"creditor_name":{json.dumps(arrival.creditor_name)}'
    return (
        f'{{"debtor_account":"{arrival.debtor}","creditor_account":"{arrival.creditor}",'
        f'"amount":{arrival.amount},"currency":"{arrival.currency}"{names}}}'
    ).encode()
