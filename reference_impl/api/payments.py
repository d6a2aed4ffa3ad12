"""POST /v1/payments (idempotent accept), GET /v1/payments/{id} (with long-poll), and an
operator's POST /v1/payments/{id}/review of a payment the compliance checks held.

Accept order: auth (401) and rate limit (429) in the tenant dependency, then the
Idempotency-Key header (400), the body's media type (415), size (413) and content (422), the
in-flight check (409), and finally service.accept.accept_payment in one unit of work, committed
before the 202 goes out. The answer is rendered before the commit, so nothing that can fail runs
between the commit and the answer.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at definition time,
# and they close over the app's Gateway, which a string annotation could not resolve.
import logging
import secrets
import time
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response

from reference_impl.api.gateway import Gateway, render_json
from reference_impl.api.models import (
    ID_PATTERN,
    NUL_RULE,
    NewPayment,
    Review,
    json_body,
    openapi_body,
)
from reference_impl.api.problems import Problem, invalid, responses
from reference_impl.core.ledger import MAX_ID_LENGTH
from reference_impl.core.payments import TERMINAL, Payment
from reference_impl.service.accept import (
    Acceptance,
    IdempotencyKeyReused,
    InvalidPayment,
    PaymentRequest,
    accept_payment,
)
from reference_impl.service.payments import PAYMENT, ReviewRefused, get_payment, review_payment
from reference_impl.service.ports import UnitOfWork
from reference_impl.timings import timings

MAX_KEY_LENGTH = 255
MAX_PAGE = 1000

log = logging.getLogger(__name__)


def _idempotency_key(values: list[str]) -> str:
    """The one Idempotency-Key header's value, or 400.

    Checked by hand, not by Header(min_length=...), so a bad key is a 400, not a 422. Two
    headers are refused rather than one picked: a proxy that merges them into "a, b" would
    silently make a new key, and with it a second payment.
    """
    if len(values) > 1:
        raise _bad_key(f"exactly one header required, got {len(values)}")
    key = values[0] if values else ""
    if not key or len(key) > MAX_KEY_LENGTH:
        got = f"{len(key)} characters" if key else "none"
        raise _bad_key(f"header of 1 to {MAX_KEY_LENGTH} characters required, got {got}")
    if "\x00" in key:
        raise _bad_key(NUL_RULE)
    return key


def _bad_key(detail: str) -> Problem:
    return Problem(400, "idempotency-key", "Bad request", f"Idempotency-Key: {detail}")


def payments_router(gw: Gateway) -> APIRouter:
    router = APIRouter()
    deps = gw.deps
    outcomes = gw.metrics.payments

    @router.post(
        "/v1/payments",
        status_code=202,
        openapi_extra=openapi_body(NewPayment),
        responses=responses(400, 401, 409, 413, 415, 422, 429, 503),
        summary="Accept a payment (idempotent per Idempotency-Key)",
    )
    async def create_payment(
        request: Request,
        tenant: Annotated[str, Depends(gw.tenant)],
        # Declared for the OpenAPI schema; read from the raw headers to see every copy of it.
        idempotency_key: Annotated[
            str | None,
            Header(alias="Idempotency-Key", description="1 to 255 characters; required"),
        ] = None,
    ) -> Response:
        started = time.perf_counter()
        key = _idempotency_key(request.headers.getlist("idempotency-key"))
        try:
            body, request_hash = await json_body(request, NewPayment)
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
            body.debtor_name,
            body.creditor_name,
        )
        payment_id = deps.new_id()

        def accept(uow: UnitOfWork) -> tuple[Acceptance, bytes]:
            acceptance = accept_payment(
                uow,
                tenant,
                key,
                payment_request,
                request_hash,
                payment_id,
                deps.clock.now(),
                deps.payments,
            )
            # Rendered before the commit: an answer that cannot be sent is never committed.
            return acceptance, render_json(acceptance.body)

        with gw.in_flight.claim(tenant, key) as claimed:
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
                commit_seconds: list[float] = []
                acceptance, content = await gw.in_store(
                    accept, commit=True, commit_seconds=commit_seconds
                )
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
        # Committed: from here on nothing may fail, or the client would never learn the id.
        headers = {"Location": f"/v1/payments/{acceptance.body['id']}"}
        if acceptance.replayed:
            headers["Idempotency-Replay"] = "true"
        _after_commit(acceptance.replayed)
        if not acceptance.replayed:  # never raises: a recorder that cannot write turns off
            timings().request(f"{tenant}/{key}", time.perf_counter() - started, sum(commit_seconds))
        return Response(
            content,
            status_code=acceptance.status_code,
            headers=headers,
            media_type="application/json",
        )

    def _after_commit(replayed: bool) -> None:
        """Count the outcome and wake the workers; a failure here is logged, never answered."""
        try:
            outcomes.labels("replayed" if replayed else "accepted").inc()
        except Exception:
            log.exception("after a committed payment: metrics failed")
        if not replayed:
            _wake()

    def _wake() -> None:
        """Wake the workers after a commit; a failure is logged, never answered (the commit
        stands, and the workers find its events at their next poll)."""
        if deps.notify is None:
            return
        try:
            deps.notify()
        except Exception:
            log.exception("after a commit: waking the workers failed")

    @router.get(
        "/v1/payments",
        responses=responses(401, 422, 429, 503),
        summary="The tenant's payments ordered by id, a page at a time",
    )
    async def list_payments(
        tenant: Annotated[str, Depends(gw.tenant)],
        after: Annotated[str, Query(max_length=MAX_ID_LENGTH)] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        if "\x00" in after:
            raise invalid([{"field": "after", "in": "query", "rule": NUL_RULE}])

        def read(uow: UnitOfWork) -> list[Payment]:
            return [
                Payment.from_json(text)
                for _, text in uow.list_records(PAYMENT, tenant, after, limit)
            ]

        page = await gw.in_store(read)
        return {"payments": [p.public() for p in page], "next": page[-1].id if page else after}

    @router.get(
        "/v1/payments/{payment_id}",
        responses=responses(401, 404, 422, 429, 503),
        summary="A payment; with ?wait=SECONDS, long-poll until its status changes",
    )
    async def read_payment(
        tenant: Annotated[str, Depends(gw.tenant)],
        payment_id: Annotated[str, Path(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)],
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

    @router.post(
        "/v1/payments/{payment_id}/review",
        status_code=202,
        openapi_extra=openapi_body(Review),
        responses=responses(401, 403, 404, 409, 415, 422, 429, 503),
        summary="An operator approves or rejects a held payment (X-Operator-Key)",
    )
    async def review(
        request: Request,
        tenant: Annotated[str, Depends(gw.tenant)],
        payment_id: Annotated[str, Path(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)],
        operator_key: Annotated[
            str | None, Header(alias="X-Operator-Key", description="an operator's key")
        ] = None,
    ) -> dict[str, Any]:
        if not operator_key or not any(
            secrets.compare_digest(operator_key, k) for k in deps.operator_keys
        ):
            raise Problem(
                403,
                "forbidden",
                "Forbidden",
                "X-Operator-Key: an operator's key is required to review a payment",
            )
        body, _ = await json_body(request, Review)

        def write(uow: UnitOfWork) -> Payment | None:
            return review_payment(
                uow,
                tenant,
                payment_id,
                body.verdict,
                body.reason,
                deps.clock.now(),
                deps.payments,
            )

        try:
            payment = await gw.in_store(write, commit=True)
        except ReviewRefused as e:
            raise Problem(409, "not-held", "Conflict", str(e)) from e
        if payment is None:
            raise Problem(404, "not-found", "Not found", f"payment {payment_id!r} does not exist")
        # Committed: from here on nothing may fail (a 500 would hide a review that stands).
        _wake()
        return payment.public()

    return router
