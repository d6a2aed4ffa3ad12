"""The regression gate: may this run ship? The scenario's SLOs, the audit, and the baseline.

A gate fails on a broken SLO, on any safety violation, or on a regression against a baseline
run of the same scenario. A regression must be both real and large enough to matter:

- **sim runs of the same seed** are deterministic, so their figures are compared exactly: any
  difference comes from the code or the scenario, and it fails when it exceeds the minimum
  effect (default 10%);
- **everything else** (load runs, sim runs of different seeds) is a sample of a noisy system:
  a latency fails only when the change is statistically significant at `alpha` AND larger than
  the minimum effect. The median is tested with a one-sided Mann-Whitney U test on the
  per-payment latencies; tail percentiles with a bootstrap confidence interval of the relative
  change (a p99 is not a location shift, so a rank test says little about it); throughput with
  Mann-Whitney U on the per-second counts of acknowledgements.

Improvements never fail a gate. Each failure carries a short explanation: what was measured,
against what, by which rule, and where to look next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reports.runs import NotARun, Run
from scenarios.slo import LATENCY_KINDS

COMPARED_STATS = ("p50", "p95", "p99")
_QUANTILE = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
BOOTSTRAP_RESAMPLES = 400
BOOTSTRAP_MAX_SAMPLES = 50_000
"""Larger samples are thinned (evenly, deterministically) before bootstrapping a percentile:
the interval of a p99 from 50,000 samples is already narrow, and resampling a million 400
times would make a gate slow."""
MEANING = {
    "ack": "first send to first 202",
    "processing": "accepted (received_at) to posted",
    "posted": "first send to posted",
    "settled": "first send to settled",
}


@dataclass(frozen=True)
class Check:
    """One line of the gate: an SLO, the audit, or one figure compared with the baseline."""

    kind: str  # "slo", "audit" or "regression"
    name: str
    passed: bool
    summary: str
    explanation: str = ""


@dataclass(frozen=True)
class GateResult:
    run: Run
    baseline: Run | None
    method: str
    min_effect: float
    alpha: float
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def same_scenario(run: Run, baseline: Run) -> None:
    """NotARun naming --baseline when the two runs cannot be compared."""
    if run.name != baseline.name:
        raise NotARun(
            f"--baseline: {baseline.path} is a run of scenario {baseline.name!r}, "
            f"RUN is of {run.name!r}; a baseline must be a run of the same scenario"
        )
    if run.mode != baseline.mode:
        raise NotARun(
            f"--baseline: {baseline.path} is a {baseline.mode} run and RUN a {run.mode} run; "
            "compare sim with sim and load with load"
        )


def evaluate(
    run: Run, baseline: Run | None = None, min_effect: float = 0.10, alpha: float = 0.01
) -> GateResult:
    checks = [*_slo_checks(run), _audit_check(run)]
    method = "none"
    if baseline is not None:
        same_scenario(run, baseline)
        exact = run.mode == "sim" and run.record.seed == baseline.record.seed
        method = "exact" if exact else "statistical"
        checks += _regressions(run, baseline, exact, min_effect, alpha)
    return GateResult(run, baseline, method, min_effect, alpha, checks)


# -- SLOs and audit ---------------------------------------------------------------------------
def _fmt(metric: str, value: float) -> str:
    if math.isnan(value):
        return "not measured"
    if metric.split(".")[0] in LATENCY_KINDS:
        return f"{value * 1000:.1f} ms"
    return f"{value:.4g}"


def _slo_checks(run: Run) -> list[Check]:
    out = []
    for s in run.slos:
        metric = s.slo.split()[0]
        summary = (
            f"SLO {s.slo}: {_fmt(metric, s.left)} (threshold {_fmt(metric, s.right)})"
            if not s.error
            else f"SLO {s.slo}: cannot be evaluated: {s.error}"
        )
        explanation = ""
        if not s.passed:
            kind = metric.split(".")[0]
            what = f" ({kind}: {MEANING[kind]})" if kind in MEANING else ""
            explanation = "\n".join(
                [
                    f"The scenario's SLO `{s.slo}` does not hold on this run{what}.",
                    f"  measured {_fmt(metric, s.left)}, threshold {_fmt(metric, s.right)}",
                    "  A metric the run could not measure (no payment got that far) fails.",
                    f"  Look: {run.path / 'report.html'} (Verdict, Latency)",
                ]
            )
        out.append(Check("slo", s.slo, s.passed, summary, explanation))
    return out


def _audit_check(run: Run) -> Check:
    counts = run.audit["counts"]
    found = ", ".join(f"{k} {v}" for k, v in counts.items() if v and k != "liveness")
    if run.audit_ok:
        return Check("audit", "audit", True, "audit: no safety violation")
    first = run.audit.get("violations", [])[:3]
    lines = [f"The audit found safety violations: {found}."]
    for v in first:
        seq = "" if v.get("seq") is None else f" seq {v['seq']}"
        lines.append(f"  {v['kind']}: payment {v.get('payment_id') or '-'}{seq}: {v['detail']}")
    seed = f" --seed {run.record.seed}" if run.record.seed is not None else ""
    lines.append(f"  Reproduce: testbed run {run.path / 'scenario.yaml'}{seed}")
    lines.append(f"  Look: {run.path / 'report.html'} (Audit), {run.path / 'audit.json'}")
    return Check("audit", "audit", False, f"audit: {found}", "\n".join(lines))


# -- regressions ------------------------------------------------------------------------------
def _regressions(run: Run, base: Run, exact: bool, min_effect: float, alpha: float) -> list[Check]:
    diff = scenario_diff(base.scenario, run.scenario)
    context = Context(run, base, exact, min_effect, alpha, diff)
    out = []
    for kind in LATENCY_KINDS:
        cand, ref = run.samples[kind].seconds, base.samples[kind].seconds
        for stat in COMPARED_STATS:
            out.append(_latency_check(context, kind, stat, cand, ref))
    out.append(_throughput_check(context))
    return out


@dataclass(frozen=True)
class Context:
    run: Run
    base: Run
    exact: bool
    min_effect: float
    alpha: float
    diff: list[str]

    def method_line(self) -> str:
        if self.exact:
            return (
                f"  method: exact figures: sim runs of the same seed ({self.run.record.seed}) "
                "are deterministic, so any difference is the code's or the scenario's"
            )
        return (
            f"  method: statistical: significant at alpha = {self.alpha:g} and larger than the "
            f"minimum effect ({self.min_effect:.0%})"
        )

    def footer(self) -> list[str]:
        lines = []
        if self.diff:
            short = [d if len(d) <= 90 else d[:87] + "..." for d in self.diff[:3]]
            shown = "; ".join(short) + (
                f" (+{len(self.diff) - 3} more)" if len(self.diff) > 3 else ""
            )
            lines.append(f"  scenario differs from the baseline's: {shown}")
        lines.append(f"  Look: testbed compare {self.base.path} {self.run.path}")
        return lines


def _latency_check(c: Context, kind: str, stat: str, cand: np.ndarray, ref: np.ndarray) -> Check:
    name = f"{kind}.{stat}"
    q = _QUANTILE[stat]
    if len(ref) == 0:
        return Check("regression", name, True, f"{name}: the baseline has no samples")
    base_value = float(np.quantile(ref, q))
    if len(cand) == 0:
        summary = f"{name}: no samples (baseline {_fmt(name, base_value)})"
        explanation = "\n".join(
            [f"No payment of this run reached {kind} ({MEANING[kind]}); the baseline's did.",
             c.method_line(), *c.footer()]
        )  # fmt: skip
        return Check("regression", name, False, summary, explanation)
    value = float(np.quantile(cand, q))
    effect = value / base_value - 1 if base_value > 0 else (math.inf if value > 0 else 0.0)
    head = f"{name}: {_fmt(name, value)}, baseline {_fmt(name, base_value)} ({effect:+.1%})"
    if c.exact:
        failed = effect > c.min_effect
        evidence = f"  n = {len(cand):,} vs {len(ref):,} samples"
    elif stat == "p50":
        from scipy.stats import mannwhitneyu

        p = float(mannwhitneyu(cand, ref, alternative="greater").pvalue)
        failed = p < c.alpha and effect > c.min_effect
        n = f"n = {len(cand):,} vs {len(ref):,}"
        evidence = f"  Mann-Whitney U (one-sided, larger): p = {p:.2g}; {n}"
        head += f", p = {p:.2g}"
    else:
        low, high = bootstrap_change(cand, ref, q, c.alpha)
        failed = low > 0 and effect > c.min_effect
        confidence = 1 - 2 * c.alpha
        evidence = (
            f"  bootstrap {confidence:.0%} interval of the change: {low:+.1%} .. {high:+.1%}; "
            f"n = {len(cand):,} vs {len(ref):,}"
        )
        head += f", {confidence:.0%} CI {low:+.1%}..{high:+.1%}"
    if not failed:
        return Check("regression", name, True, head)
    explanation = "\n".join(
        [
            f"{kind} ({MEANING[kind]}) {stat} regressed by {effect:+.1%} against the baseline "
            f"(minimum effect {c.min_effect:.0%}).",
            f"  this run {_fmt(name, value)}, baseline {_fmt(name, base_value)}",
            c.method_line(),
            evidence,
            *c.footer(),
        ]
    )
    return Check("regression", name, False, head, explanation)


def bootstrap_change(
    cand: np.ndarray, ref: np.ndarray, q: float, alpha: float
) -> tuple[float, float]:
    """A (1 - 2 alpha) percentile-bootstrap interval of quantile_q(cand) / quantile_q(ref) - 1:
    its lower bound above zero is a one-sided test at level alpha."""
    from scipy.stats import bootstrap

    def change(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        result: np.ndarray = np.quantile(x, q, axis=axis) / np.quantile(y, q, axis=axis) - 1
        return result

    res = bootstrap(
        (_thin(cand), _thin(ref)),
        change,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=1 - 2 * alpha,
        method="percentile",
        vectorized=True,
        batch=20,
        rng=np.random.default_rng(0),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _thin(values: np.ndarray) -> np.ndarray:
    if len(values) <= BOOTSTRAP_MAX_SAMPLES:
        return values
    step = len(values) / BOOTSTRAP_MAX_SAMPLES
    return np.sort(values)[(np.arange(BOOTSTRAP_MAX_SAMPLES) * step).astype(np.int64)]


def acks_per_second(run: Run) -> np.ndarray:
    """Acknowledgements in each whole second of the traffic window."""
    acked = run.acked_at
    start = 0.0 if run.mode == "sim" else float(run.record.requests["intended_at"].min())
    seconds = max(1, int(run.duration))
    counts, _ = np.histogram(acked - start, bins=seconds, range=(0.0, float(seconds)))
    return counts


def _throughput_check(c: Context) -> Check:
    value, base_value = c.run.metrics["throughput"], c.base.metrics["throughput"]
    if base_value <= 0:
        return Check("regression", "throughput", True, "throughput: the baseline has none")
    effect = value / base_value - 1
    head = f"throughput: {value:.1f}/s, baseline {base_value:.1f}/s ({effect:+.1%})"
    if c.exact:
        failed = -effect > c.min_effect
        offered = c.run.metrics["offered"], c.base.metrics["offered"]
        evidence = f"  offered {offered[0]:.1f}/s vs {offered[1]:.1f}/s"
    else:
        from scipy.stats import mannwhitneyu

        a, b = acks_per_second(c.run), acks_per_second(c.base)
        p = float(mannwhitneyu(a, b, alternative="less").pvalue)
        failed = p < c.alpha and -effect > c.min_effect
        evidence = f"  Mann-Whitney U on acknowledgements a second (one-sided, fewer): p = {p:.2g}"
        head += f", p = {p:.2g}"
    if not failed:
        return Check("regression", "throughput", True, head)
    explanation = "\n".join(
        [
            f"Throughput (keys acknowledged per second) fell by {-effect:.1%} against the "
            f"baseline (minimum effect {c.min_effect:.0%}).",
            c.method_line(),
            evidence,
            *c.footer(),
        ]
    )
    return Check("regression", "throughput", False, head, explanation)


def scenario_diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Fields that differ between two scenarios as `path: a -> b`, in document order."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in [*a, *(k for k in b if k not in a)]:
            sub = f"{path}.{key}" if path else str(key)
            out += scenario_diff(a.get(key), b.get(key), sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in scenario_diff(x, y, f"{path}[{i}]")]  # fmt: skip
    return [] if a == b else [f"{path}: {a} -> {b}"]


# -- output -----------------------------------------------------------------------------------
def junit_xml(result: GateResult, checks: Sequence[Check] | None = None) -> bytes:
    """The gate as JUnit XML: one test case per check, a <failure> with its explanation."""
    import xml.etree.ElementTree as ET

    checks = result.checks if checks is None else checks
    run = result.run
    failures = sum(not c.passed for c in checks)
    suites = ET.Element("testsuites", name="testbed gate", tests=str(len(checks)),
                        failures=str(failures), errors="0", time="0")  # fmt: skip
    suite = ET.SubElement(
        suites, "testsuite", name=f"gate {run.name} seed {run.record.seed}",
        tests=str(len(checks)), failures=str(failures), errors="0", skipped="0", time="0",
    )  # fmt: skip
    props = ET.SubElement(suite, "properties")
    facts = {"run": str(run.path), "mode": run.mode, "seed": str(run.record.seed),
             "method": result.method, "min_effect": f"{result.min_effect:g}",
             "alpha": f"{result.alpha:g}"}  # fmt: skip
    if result.baseline is not None:
        facts["baseline"] = str(result.baseline.path)
    for key, value in facts.items():
        ET.SubElement(props, "property", name=key, value=value)
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"testbed.gate.{c.kind}", name=c.name,
                             time="0")  # fmt: skip
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=c.summary, type=c.kind)
            failure.text = c.explanation or c.summary
        else:
            ET.SubElement(case, "system-out").text = c.summary
    ET.indent(suites)
    data: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def write_junit(path: Path, result: GateResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(junit_xml(result))
    tmp.replace(path)
