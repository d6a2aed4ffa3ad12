"""SLO expressions such as `ack.p99 < 200ms` or `throughput >= 0.95 * offered`.

A scenario's gates are strings a person writes; they are parsed by this small recursive-descent
parser (never `eval`), checked against the metrics a run reports when the scenario loads (so a
typo fails before an hour-long run, not after), and evaluated against a run's metrics.

    slo    := expr OP expr            OP := < <= > >= == !=
    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := NUMBER [UNIT] | METRIC | '(' expr ')' | '-' factor
    UNIT   := us ms s min h (to seconds) | % (to a fraction) | /s /min (to per second)
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

LATENCY_KINDS = ("ack", "processing", "posted", "settled")
"""Latencies named for what they measure (docs/run-record.md, "Latencies"): `ack` a key's first
send to its first 202; `processing` the payment's acceptance (`received_at`) to `posted_at`;
`posted` the first send to `posted_at`; `settled` the first send to `settled_at`."""
LATENCY_STATS = ("p50", "p95", "p99", "p999", "max", "mean")
METRICS: frozenset[str] = frozenset(
    [f"{kind}.{stat}" for kind in LATENCY_KINDS for stat in LATENCY_STATS]
    + [
        "throughput",
        "offered",
        "audit.violations",
        "liveness.stuck",
        "payments.posted",
        "payments.rejected",
        "payments.failed",
        "requests.timeouts",
        "requests.errors",
    ]
)
"""What a run reports: latencies in seconds, rates per second, the rest counts."""
_KNOWN = ", ".join(
    [
        f"{{{','.join(LATENCY_KINDS)}}}.{{{','.join(LATENCY_STATS)}}} (seconds)",
        *sorted(m for m in METRICS if m.split(".")[0] not in LATENCY_KINDS),
    ]
)

_UNITS = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "%": 0.01,
    "/s": 1.0,
    "/min": 1 / 60,
}
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)(?P<unit>/s|/min|us|ms|min|s|h|%)?"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)"
    r"|(?P<op><=|>=|==|!=|<|>)"
    r"|(?P<sym>[-+*/()]))"
)
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}

Expr = Callable[[Mapping[str, float]], float]


class SloError(ValueError):
    """The expression is malformed or names an unknown metric; the message says which."""


@dataclass(frozen=True, slots=True)
class SloResult:
    text: str
    passed: bool
    left: float
    right: float


@dataclass(frozen=True, slots=True)
class Slo:
    text: str
    op: str
    left: Expr
    right: Expr

    def evaluate(self, metrics: Mapping[str, float]) -> SloResult:
        """Pass or fail; a metric the run could not measure (NaN) fails the gate."""
        try:
            left, right = self.left(metrics), self.right(metrics)
        except ZeroDivisionError:
            left = right = math.nan
        ok = not (math.isnan(left) or math.isnan(right)) and _COMPARE[self.op](left, right)
        return SloResult(self.text, ok, left, right)


def _tokenize(text: str) -> list[tuple[str, str, str]]:
    tokens: list[tuple[str, str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SloError(f"unexpected {text[pos:].strip()[:12]!r} at column {pos + 1}")
        kind = m.lastgroup if m.lastgroup != "unit" else "num"
        value = m.group(kind or "sym")
        tokens.append((kind or "sym", value, m.group("unit") or ""))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, str]:
        tok = self.peek()
        if tok is None:
            raise SloError("expression ends too early")
        self.i += 1
        return tok

    def expr(self) -> Expr:
        left = self.term()
        while (tok := self.peek()) is not None and tok[1] in "+-" and tok[0] == "sym":
            self.take()
            left = _binary(_ARITH[tok[1]], left, self.term())
        return left

    def term(self) -> Expr:
        left = self.factor()
        while (tok := self.peek()) is not None and tok[1] in "*/" and tok[0] == "sym":
            self.take()
            left = _binary(_ARITH[tok[1]], left, self.factor())
        return left

    def factor(self) -> Expr:
        kind, value, unit = self.take()
        if kind == "num":
            number = float(value) * _UNITS.get(unit, 1.0)
            return lambda _m: number
        if kind == "name":
            if value not in METRICS:
                raise SloError(f"unknown metric {value!r} (known: {_KNOWN})")
            return lambda m: float(m.get(value, math.nan))
        if value == "(":
            inner = self.expr()
            if self.take()[1] != ")":
                raise SloError("missing ')'")
            return inner
        if value == "-":
            inner = self.factor()
            return lambda m: -inner(m)
        raise SloError(f"unexpected {value!r}")


def _binary(fn: Callable[[float, float], float], a: Expr, b: Expr) -> Expr:
    return lambda m: fn(a(m), b(m))


def parse_slo(text: str) -> Slo:
    """Parse `text`, or SloError naming what is wrong."""
    p = _Parser(text)
    left = p.expr()
    tok = p.take() if p.peek() is not None else None
    if tok is None or tok[0] != "op":
        raise SloError("must compare two sides with one of < <= > >= == !=")
    right = p.expr()
    if p.peek() is not None:
        raise SloError(f"unexpected {p.peek()[1]!r} after the comparison")  # type: ignore[index]
    return Slo(text.strip(), tok[1], left, right)
