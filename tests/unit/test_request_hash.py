"""One idempotency hash for both runtimes: the sim's clients hash a request as the API does."""

from __future__ import annotations

import json
import random

import simpy

from reference_impl.api.models import NewPayment, parse_body
from reference_impl.service.accept import request_hash
from scenarios.schema import Workload
from sim.clients import Attempt, Clients


def test_the_api_hashes_the_canonical_body_whatever_its_formatting() -> None:
    body = {"debtor_account": "a", "creditor_account": "b", "amount": 5, "currency": "EUR"}
    spaced = json.dumps(dict(reversed(body.items())), indent=2).encode()
    assert parse_body(spaced, NewPayment)[1] == request_hash(body)
    other = {**body, "reference": "invoice 7"}
    assert parse_body(json.dumps(other).encode(), NewPayment)[1] != request_hash(body)


def test_a_sim_client_hashes_what_it_would_send_as_the_api_does() -> None:
    sent: list[Attempt] = []
    env = simpy.Environment()
    clients = Clients(env, Workload(rate=10.0), random.Random(1), random.Random(2), sent.append)
    clients._new_request()
    [attempt] = sent
    req = attempt.request
    wire = {
        "debtor_account": req.body.debtor_account,
        "creditor_account": req.body.creditor_account,
        "amount": req.body.amount,
        "currency": req.body.currency,
    }
    assert req.request_hash == parse_body(json.dumps(wire).encode(), NewPayment)[1]
