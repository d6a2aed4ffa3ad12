"""Errors as RFC 9457 problem details: every non-2xx answer is `application/problem+json`.

Handlers raise `Problem`; this module maps it, FastAPI's request validation errors, Starlette's
routing errors (404, 405) and anything unexpected (500) to one body shape
`{"type","title","status","detail"}` plus extension members (`errors` naming each invalid field
and its rule, `retry_after`). `type` is a relative URI under /problems/ that docs/api.md lists.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger(__name__)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


class Problem(Exception):
    """An answer that is not a success; `slug` names its documented type."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> ProblemResponse:
        body = {
            "type": f"/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }
        return ProblemResponse(body, status_code=self.status, headers=self.headers)


def invalid(errors: Sequence[Mapping[str, str]]) -> Problem:
    """A 422 naming each invalid field (`field`, where it was: `in`, and the broken `rule`)."""
    detail = "; ".join(f"{e['field']}: {e['rule']}" for e in errors)
    return Problem(
        422, "validation", "Invalid request", detail, extra={"errors": [dict(e) for e in errors]}
    )


_WHERE = {"body": "body", "query": "query", "path": "path", "header": "header"}


def describe_validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic/FastAPI error dicts as {field, in, rule}, e.g. {amount, body, must be ...}."""
    out: list[dict[str, str]] = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        where = "body"
        if loc and loc[0] in _WHERE:
            where = _WHERE[loc[0]]
            loc = loc[1:]
        message = str(err.get("msg", "is invalid"))
        if err.get("type") == "json_invalid":
            message = "must be valid JSON" + message.removeprefix("Invalid JSON")
        elif message.startswith("Input should be"):
            message = "must be" + message[len("Input should be") :]
        elif message == "Field required":
            message = "is required"
        elif message.startswith("Extra inputs"):
            message = "is not a known field"
        if str(err.get("type", "")).endswith("_type") and "input" in err:
            message += f" (got {_json_type(err['input'])})"
        out.append({"field": ".".join(loc) or where, "in": where, "rule": message})
    return out


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number with a fraction or exponent"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


def install(app: FastAPI) -> None:
    """Route every error through `Problem` so clients parse one shape."""

    async def on_problem(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, Problem)
        return exc.response()

    async def on_validation(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, RequestValidationError)
        return invalid(describe_validation_errors(exc.errors())).response()

    async def on_http(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        title = _TITLES.get(status, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        if status in (404, 405) and detail == StarletteHTTPException(status).detail:
            # Starlette's own routing errors: say which route was asked for.
            verb = "no route for" if status == 404 else "method not allowed:"
            detail = f"{verb} {request.method} {request.url.path}"
        slug = title.lower().replace(" ", "-")
        return Problem(status, slug, title, detail, headers=exc.headers).response()

    async def on_crash(request: Request, exc: Exception) -> ProblemResponse:
        # Starlette re-raises after this handler answers, so the server still logs the trace.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return Problem(
            500, "internal", "Internal error", "the gateway failed; the error was logged"
        ).response()

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problem statuses an operation can answer."""
    return {
        status: {
            "description": _TITLES.get(status, "Problem"),
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
