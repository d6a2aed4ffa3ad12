"""Property-based fuzzing of the gateway from its own OpenAPI schema: no input yields a 5xx.

Schemathesis generates requests (valid and invalid bodies, headers, paths, queries) for every
operation and sends them through the ASGI app. Every answer must be below 500 and, when it is an
error, problem+json. Examples per operation are capped to keep the run under a minute.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from reference_impl.adapters.memory import MemoryStore
from reference_impl.adapters.rate_limit import Unlimited
from reference_impl.api import GatewayDeps, create_app
from reference_impl.core.ledger import Account
from reference_impl.service.ledger import create_accounts


class FixedClock:
    def now(self) -> float:
        return 1_000.0


def _app() -> object:
    store = MemoryStore()
    # A few real accounts, so generated payments can also take the accepting path.
    create_accounts(store, "acme", [Account("alice", "EUR", True), Account("bob", "EUR")])
    ids = itertools.count(1)
    return create_app(
        GatewayDeps(
            store=store,
            api_keys={"key-acme": "acme"},
            clock=FixedClock(),
            new_id=lambda: f"id{next(ids)}",
            rate_limiter=Unlimited(),
            poll_interval=0.001,
            max_wait=0.05,  # a generated ?wait= must not stall the run
        )
    )


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_the_gateway_fail(case: schemathesis.Case[Any]) -> None:
    response = case.call(headers={"Authorization": "Bearer key-acme"})
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
    if response.status_code >= 400:
        # Schemathesis gives each header as the list of its values.
        assert response.headers["content-type"] == ["application/problem+json"], response.text
        assert {"type", "title", "status", "detail"} <= set(response.json())
