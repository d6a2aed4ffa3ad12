"""Durations and rates as people write them in a scenario: `250ms`, `2s`, `1500/s`, `30/min`.

They parse to plain floats (seconds, events per second), so the sim never sees a string. A bad
value fails with a message that says what a good one looks like, which the loader turns into
one line naming the file and the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PER = {"s": 1.0, "sec": 1.0, "min": 1 / 60, "m": 1 / 60, "h": 1 / 3600}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?"
_DURATION_RE = re.compile(rf"^\s*({_NUMBER})\s*(us|ms|s|min|m|h)\s*$")
_RATE_RE = re.compile(rf"^\s*({_NUMBER})\s*/\s*(s|sec|min|m|h)\s*$")

DURATION_RULE = "must be a duration like '250ms', '2s' or '5min'"
RATE_RULE = "must be a rate like '1500/s' or '30/min'"


def _plain_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _parse(
    value: Any, pattern: re.Pattern[str], scale: dict[str, float], kind: str, rule: str
) -> float:
    number = _plain_number(value)
    if number is None and isinstance(value, str):
        m = pattern.match(value)
        if m:
            number = float(m.group(1)) * scale[m.group(3)]
    if number is None or not 0 <= number < float("inf"):  # NaN fails the comparison too
        raise PydanticCustomError(kind, rule)
    return number


def parse_duration(value: Any) -> float:
    """Seconds from '250ms' / '2s' / '5min' / '1h' or a bare number of seconds (>= 0)."""
    return _parse(value, _DURATION_RE, _SECONDS, "duration", DURATION_RULE)


def parse_rate(value: Any) -> float:
    """Events per second from '1500/s' / '30/min' / '2/h' or a bare number per second (>= 0)."""
    return _parse(value, _RATE_RE, _PER, "rate", RATE_RULE)


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def format_rate(per_second: float) -> str:
    return f"{per_second:g}/s"


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": _DURATION_RE.pattern, "examples": ["250ms", "2s", "5min"]},
        {"type": "number", "minimum": 0},
    ],
    "description": "seconds, or a string with a unit: us, ms, s, min, h",
}
_RATE_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": _RATE_RE.pattern, "examples": ["1500/s", "30/min"]},
        {"type": "number", "minimum": 0},
    ],
    "description": "events per second, or a string like '1500/s', '30/min', '2/h'",
}

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
Rate = Annotated[
    float,
    BeforeValidator(parse_rate),
    PlainSerializer(format_rate, return_type=str),
    WithJsonSchema(_RATE_SCHEMA),
]
