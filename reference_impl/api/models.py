"""Request bodies as strict pydantic models, parsed by hand from the raw bytes.

Strict, because money is never coerced: `"amount": 10.0` or `"amount": "10"` is refused, not
rounded or parsed. Parsed by hand (not as a FastAPI body parameter), because FastAPI decodes the
JSON before it runs dependencies: a malformed body would then answer 422 before authentication
could answer 401. Read by hand too, so that an oversized body is refused (413) without being
read into memory, and a body not declared as JSON (415) is not read at all. The raw body is also
what the idempotency hash covers. `openapi_body` puts the models back into the OpenAPI schema,
so docs and schemathesis still see them.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
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
    debtor_name: Annotated[StrictStr, Field(max_length=140)] = ""
    creditor_name: Annotated[StrictStr, Field(max_length=140)] = ""


class Review(_Strict):
    verdict: Literal["approve", "reject"]
    reason: Annotated[StrictStr, Field(max_length=500)] = ""


Model = TypeVar("Model", bound=BaseModel)

NUL_RULE = "must not contain the NUL character (U+0000)"
"""PostgreSQL text cannot hold NUL, and no payment field needs it: refused on every store alike."""


def require_json(request: Request) -> None:
    """415 unless the body is declared `application/json` (parameters and case aside)."""
    declared = request.headers.get("content-type")
    media = (declared or "").partition(";")[0].strip().lower()
    if media != "application/json":
        got = repr(declared) if declared is not None else "none"
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"Content-Type: must be application/json, got {got}",
        )


async def read_body(request: Request) -> bytes:
    """The raw body, or 413 as soon as it is known to exceed MAX_BODY_BYTES.

    A declared Content-Length over the limit is refused before any of the body is read, and a
    streamed body is read only until it crosses the limit, so a huge upload costs the gateway
    at most one chunk past 64 KiB of memory.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(f"{int(declared)} declared in Content-Length")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(f"more than {MAX_BODY_BYTES} sent")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(got: str) -> Problem:
    return Problem(
        413,
        "payload-too-large",
        "Payload too large",
        f"body: must be at most {MAX_BODY_BYTES} bytes, got {got}",
    )


async def json_body(request: Request, model: type[Model]) -> tuple[Model, str]:
    """The request's validated body and its hash (see `parse_body`), after 415 and 413 checks."""
    require_json(request)
    return parse_body(await read_body(request), model)


def parse_body(raw: bytes, model: type[Model]) -> tuple[Model, str]:
    """The validated body and the sha256 of its canonical JSON, or a 422 Problem.

    Standard JSON only (RFC 8259): NaN, Infinity and numbers that overflow a double are refused,
    because no JSON answer or stored record could carry them; so is a key repeated within an
    object (which value did the client mean?) and the NUL character anywhere. Canonical JSON
    (sorted keys, no spaces) makes the hash ignore formatting and key order, so a retry that
    re-serialises the same request still matches its idempotency record.
    """
    decoder = _StrictDecoder()
    try:
        document = json.loads(
            raw,
            parse_float=decoder.number,
            parse_constant=decoder.constant,
            object_pairs_hook=decoder.object,
        )
    except json.JSONDecodeError as e:
        raise _invalid_json(f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise _invalid_json("nested too deeply") from None
    except ValueError:  # an integer literal longer than Python converts (4300 digits)
        raise _invalid_json("a number too long to read") from None
    if decoder.suspect or b"\\u0000" in raw:
        found = _first_nonstandard(document)
        if found is not None:
            field, rule = found
            raise invalid([{"field": field, "in": "body", "rule": rule}])
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as e:
        raise invalid(describe_validation_errors(e.errors())) from None
    return parsed, request_hash(document)


def _invalid_json(why: str) -> Problem:
    return invalid([{"field": "body", "in": "body", "rule": f"must be valid JSON: {why}"}])


class _NotFinite:
    """What NaN, Infinity, -Infinity and an overflowing number parse to: found and refused."""


_NOT_FINITE = _NotFinite()


class _Duplicated(dict[str, Any]):
    """An object in which `key` appeared more than once."""

    key = ""


class _StrictDecoder:
    """json.loads hooks that mark what standard JSON forbids; `suspect` says whether to look."""

    def __init__(self) -> None:
        self.suspect = False

    def number(self, text: str) -> float | _NotFinite:
        value = float(text)
        if math.isfinite(value):
            return value
        self.suspect = True
        return _NOT_FINITE

    def constant(self, name: str) -> _NotFinite:
        self.suspect = True
        return _NOT_FINITE

    def object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        self.suspect = True
        duplicated = _Duplicated(obj)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                duplicated.key = key
                break
            seen.add(key)
        return duplicated


def _first_nonstandard(document: Any) -> tuple[str, str] | None:
    """(field path, rule) of the first value standard JSON or the store cannot hold, in order.

    Iterative, so a document as deep as json.loads accepts cannot exhaust the stack here.
    """
    stack: list[tuple[tuple[str, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _NotFinite):
            return _field(path), "must be a finite JSON number"
        if isinstance(value, str) and "\x00" in value:
            return _field(path), NUL_RULE
        if isinstance(value, _Duplicated):
            return _field((*path, value.key)), "must appear only once in its object"
        if isinstance(value, dict):
            if any("\x00" in key for key in value):
                return _field(path), f"keys {NUL_RULE}"
            stack += [((*path, k), v) for k, v in reversed(value.items())]
        elif isinstance(value, list):
            stack += [((*path, str(i)), v) for i, v in reversed(list(enumerate(value)))]
    return None


def _field(path: tuple[str, ...]) -> str:
    return ".".join(path) or "body"


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for an operation that reads `model` from a JSON body by hand."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
