"""Request bodies as strict pydantic models, parsed by hand from the raw bytes.

Strict, because money is never coerced: `"amount": 10.0` or `"amount": "10"` is refused, not
rounded or parsed. Parsed by hand (not as a FastAPI body parameter), because FastAPI decodes the
JSON before it runs dependencies: a malformed body would then answer 422 before authentication
could answer 401. The raw body is also what the idempotency hash covers. `openapi_body` puts the
models back into the OpenAPI schema, so docs and schemathesis still see them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from reference_impl.api.problems import Problem, describe_validation_errors, invalid
from reference_impl.core.ledger import MAX_ID_LENGTH
from reference_impl.core.money import MAX_AMOUNT
from reference_impl.service.accept import request_hash

MAX_BODY_BYTES = 64 * 1024
"""Larger bodies get 413: metadata is meant for a few labels, not documents."""

# Ids appear in URL paths (/v1/accounts/{id}), so they are limited to URL-unreserved characters.
ID_PATTERN = r"^[A-Za-z0-9._~:-]+$"

AccountId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
Currency = Annotated[StrictStr, Field(min_length=3, max_length=3, description="ISO 4217 code")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class NewAccount(_Strict):
    id: AccountId | None = None
    currency: Currency
    overdraft: StrictBool = False
    holder_name: Annotated[StrictStr, Field(max_length=140)] = ""


class NewPayment(_Strict):
    debtor_account: AccountId
    creditor_account: AccountId
    amount: Annotated[
        StrictInt,
        Field(ge=1, le=MAX_AMOUNT, description="Integer minor units, 1 to 2^63-1"),
    ]
    currency: Currency
    reference: Annotated[StrictStr, Field(max_length=140)] = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


Model = TypeVar("Model", bound=BaseModel)


def parse_body(raw: bytes, model: type[Model]) -> tuple[Model, str]:
    """The validated body and the sha256 of its canonical JSON, or a 413/422 Problem.

    Canonical JSON (sorted keys, no spaces) makes the hash ignore formatting and key order, so a
    retry that re-serialises the same request still matches its idempotency record.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise Problem(
            413,
            "payload-too-large",
            "Payload too large",
            f"body: must be at most {MAX_BODY_BYTES} bytes, got {len(raw)}",
        )
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as e:
        raise invalid(describe_validation_errors(e.errors())) from None
    return parsed, request_hash(json.loads(raw))


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for an operation that reads `model` from a JSON body by hand."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
