"""POST /v1/payments (idempotent accept) and GET /v1/payments/{id} (with long-poll).

Accept order: auth (401) and rate limit (429) in the tenant dependency, then the
Idempotency-Key header (400), the body (422), the in-flight check (409), and finally
service.accept.accept_payment in one unit of work, committed before the 202 goes out.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at definition time,
# and they close over the app's Gateway, which a string annotation could not resolve.
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from reference_impl.api.gateway import Gateway
from reference_impl.api.models import ID_PATTERN, NewPayment, openapi_body, parse_body
from reference_impl.api.problems import Problem, invalid, responses
from reference_impl.core.payments import TERMINAL, Payment
from reference_impl.service.accept import (
    Acceptance,
    IdempotencyKeyReused,
    InvalidPayment,
    PaymentRequest,
    accept_payment,
)
from reference_impl.service.payments import get_payment
from reference_impl.service.ports import UnitOfWork

MAX_KEY_LENGTH = 255


def payments_router(gw: Gateway) -> APIRouter:
    router = APIRouter()
    deps = gw.deps
    outcomes = gw.metrics.payments

    @router.post(
        "/v1/payments",
        status_code=202,
        openapi_extra=openapi_body(NewPayment),
        responses=responses(400, 401, 409, 413, 422, 429, 503),
        summary="Accept a payment (idempotent per Idempotency-Key)",
    )
    async def create_payment(
        request: Request,
        tenant: Annotated[str, Depends(gw.tenant)],
        idempotency_key: Annotated[
            str | None,
            Header(alias="Idempotency-Key", description="1 to 255 characters; required"),
        ] = None,
    ) -> JSONResponse:
        # Checked by hand, not by Header(min_length=...), so a bad key is a 400, not a 422.
        if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
            got = f"{len(idempotency_key)} characters" if idempotency_key else "none"
            raise Problem(
                400,
                "idempotency-key",
                "Bad request",
                f"Idempotency-Key: header of 1 to {MAX_KEY_LENGTH} characters required, got {got}",
            )
        try:
            body, request_hash = parse_body(await request.body(), NewPayment)
        except Problem:
            outcomes.labels("invalid").inc()
            raise
        payment_request = PaymentRequest(
            body.debtor_account,
            body.creditor_account,
            body.amount,
            body.currency,
            body.reference,
            body.metadata,
        )
        payment_id = deps.new_id()

        def accept(uow: UnitOfWork) -> Acceptance:
            return accept_payment(
                uow,
                tenant,
                idempotency_key,
                payment_request,
                request_hash,
                payment_id,
                deps.clock.now(),
                deps.payments,
            )

        with gw.in_flight.claim(tenant, idempotency_key) as claimed:
            if not claimed:
                outcomes.labels("in_flight").inc()
                raise Problem(
                    409,
                    "in-flight",
                    "Conflict",
                    "Idempotency-Key: a request with this key is still being handled; retry",
                    headers={"Retry-After": "1"},
                )
            try:
                acceptance = await gw.in_store(accept, commit=True)
            except InvalidPayment as e:
                outcomes.labels("invalid").inc()
                raise invalid([{"field": e.field, "in": "body", "rule": e.rule}]) from e
            except IdempotencyKeyReused as e:
                outcomes.labels("key_reused").inc()
                raise Problem(
                    422,
                    "idempotency-key-reused",
                    "Idempotency key reused",
                    "Idempotency-Key: already used with a different request body",
                ) from e
        headers = {"Location": f"/v1/payments/{acceptance.body['id']}"}
        if acceptance.replayed:
            outcomes.labels("replayed").inc()
            headers["Idempotency-Replay"] = "true"
        else:
            outcomes.labels("accepted").inc()
            if deps.notify is not None:
                deps.notify()
        return JSONResponse(acceptance.body, status_code=acceptance.status_code, headers=headers)

    @router.get(
        "/v1/payments/{payment_id}",
        responses=responses(401, 404, 422, 429, 503),
        summary="A payment; with ?wait=SECONDS, long-poll until its status changes",
    )
    async def read_payment(
        tenant: Annotated[str, Depends(gw.tenant)],
        payment_id: Annotated[str, Path(max_length=255, pattern=ID_PATTERN)],
        wait: Annotated[float, Query(ge=0, le=deps.max_wait, allow_inf_nan=False)] = 0.0,
    ) -> dict[str, Any]:
        def read(uow: UnitOfWork) -> Payment | None:
            return get_payment(uow, tenant, payment_id)

        payment = await gw.in_store(read)
        if payment is None:
            # Another tenant's payment is indistinguishable from a missing one.
            raise Problem(404, "not-found", "Not found", f"payment {payment_id!r} does not exist")
        # The API layer may sleep; the service may not. So the long-poll lives here and polls.
        deadline = anyio.current_time() + wait
        first = payment.status
        while payment.status is first and first not in TERMINAL:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            await anyio.sleep(min(deps.poll_interval, remaining))
            payment = await gw.in_store(read) or payment
        return payment.public()

    return router
