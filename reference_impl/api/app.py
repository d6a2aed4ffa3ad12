"""The gateway's app factory and the routes for accounts, the journal, health and metrics.

`create_app(deps)` is the only entry point: the runtime composes it with its workers under
uvicorn, the tests drive it through httpx.ASGITransport. docs/api.md is the contract as built.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at definition time,
# and they close over the app's Gateway, which a string annotation could not resolve.
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from reference_impl.api import problems
from reference_impl.api.deps import GatewayDeps
from reference_impl.api.gateway import Gateway, render_json
from reference_impl.api.metrics import MetricsMiddleware
from reference_impl.api.models import ID_PATTERN, NewAccount, json_body, openapi_body
from reference_impl.api.payments import payments_router
from reference_impl.api.problems import Problem, invalid, responses
from reference_impl.api.settlement import settlement_router
from reference_impl.core.journal import JournalEntry
from reference_impl.core.ledger import MAX_ID_LENGTH, Account, AccountResult
from reference_impl.service.ledger import create_accounts_in
from reference_impl.service.ports import UnitOfWork

MAX_PAGE = 1000


def account_body(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "currency": account.currency,
        "overdraft": account.overdraft,
        "holder_name": account.holder_name,
        "balance": {
            "posted": account.posted,
            "pending": account.pending,
            "available": account.available,
            "debits_posted": account.debits_posted,
            "debits_pending": account.debits_pending,
            "credits_posted": account.credits_posted,
            "credits_pending": account.credits_pending,
        },
    }


def accounts_router(gw: Gateway) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/accounts",
        status_code=201,
        openapi_extra=openapi_body(NewAccount),
        responses=responses(401, 409, 413, 415, 422, 429, 503),
        summary="Open an account (zero balances)",
    )
    async def create_account(
        request: Request, tenant: Annotated[str, Depends(gw.tenant)]
    ) -> Response:
        body, _ = await json_body(request, NewAccount)
        account = Account(
            body.id or gw.deps.new_id(), body.currency, body.overdraft, body.holder_name
        )

        def create(uow: UnitOfWork) -> tuple[AccountResult, bytes]:
            [code] = create_accounts_in(uow, tenant, [account])
            # Rendered before the commit: an answer that cannot be sent is never committed.
            return code, render_json(account_body(account))

        code, content = await gw.in_store(create, commit=True)
        if code is AccountResult.OK:
            return Response(
                content,
                status_code=201,
                headers={"Location": f"/v1/accounts/{account.id}"},
                media_type="application/json",
            )
        if code.value.startswith("exists"):
            raise Problem(
                409, "account-exists", "Conflict", f"id: account {account.id!r} already exists"
            )
        # The remaining codes are the core's own checks of a new account's fields.
        field = "currency" if code is AccountResult.CURRENCY_UNKNOWN else "id"
        rule = {
            AccountResult.CURRENCY_UNKNOWN: "must be an ISO 4217 currency code",
            AccountResult.ID_MUST_NOT_BE_EMPTY: "must not be empty",
            AccountResult.ID_TOO_LONG: "is too long",
        }.get(code, code.value)
        raise invalid([{"field": field, "in": "body", "rule": rule}])

    @router.get(
        "/v1/accounts/{account_id}",
        responses=responses(401, 404, 422, 429, 503),
        summary="An account and its balances in minor units",
    )
    async def read_account(
        tenant: Annotated[str, Depends(gw.tenant)],
        account_id: Annotated[str, Path(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)],
    ) -> dict[str, Any]:
        def read(uow: UnitOfWork) -> Account | None:
            return uow.get_accounts(tenant, [account_id]).get(account_id)

        account = await gw.in_store(read)
        if account is None:
            raise Problem(404, "not-found", "Not found", f"account {account_id!r} does not exist")
        return account_body(account)

    return router


def journal_router(gw: Gateway) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/v1/journal",
        responses=responses(401, 422, 429, 503),
        summary="The tenant's hash-chained journal, a page at a time; an empty page ends it",
    )
    async def read_journal(
        tenant: Annotated[str, Depends(gw.tenant)],
        after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        def read(uow: UnitOfWork) -> list[JournalEntry]:
            return uow.read_journal(tenant, after, limit)

        entries = await gw.in_store(read)
        return {
            "entries": [asdict(e) for e in entries],
            "next": entries[-1].seq if entries else after,
        }

    return router


def operations_router(gw: Gateway) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", summary="Liveness: the gateway answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics() -> Response:
        return Response(gw.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(deps: GatewayDeps) -> FastAPI:
    """The gateway over `deps`. Builds routes and metrics only: connects to nothing."""
    gw = Gateway(deps)
    app = FastAPI(
        title="Payments Testbed gateway",
        version="1",
        description="The reference implementation's HTTP API; see docs/api.md.",
    )
    problems.install(app)
    app.add_middleware(MetricsMiddleware, metrics=gw.metrics)
    app.include_router(accounts_router(gw))
    app.include_router(payments_router(gw))
    app.include_router(journal_router(gw))
    app.include_router(settlement_router(gw))
    app.include_router(operations_router(gw))
    app.state.gateway = gw
    return app
