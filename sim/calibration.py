"""Calibration files: service times fitted from a load run, read by the sim instead of its defaults.

`testbed calibrate LOAD_RUN -o calibration.yaml` writes one (sim/fit.py fits it);
`testbed run SCENARIO --calibration calibration.yaml` (and `testbed sweep`) simulate with it. The
file names `ServiceTimes` fields (sim/service_times.py); a field it leaves out keeps its default.
Each distribution is one of `{lognormal: {median, sigma}}`, `{exponential: {mean}}` or
`{constant: {value}}` (seconds); a batch cost is `{base: DISTRIBUTION, per_item, per_skipped}`;
`consumer_poll` and `client_cpu` are seconds, `host_cores` and `ledger_writers` counts.
`samples` beside a fitted entry says how many measurements it came from; `source` says which run.
A file that breaks a rule is refused with the path of the field and the rule, before anything runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sim.service_times import (
    DEFAULTS,
    BatchCost,
    Constant,
    Distribution,
    Exponential,
    LogNormal,
    ServiceTimes,
)

Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class CalibrationError(ValueError):
    """The file cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _LogNormal(_Strict):
    median: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    sigma: Seconds


class _Exponential(_Strict):
    mean: Seconds


class _Constant(_Strict):
    value: Seconds


class _Distribution(_Strict):
    lognormal: _LogNormal | None = None
    exponential: _Exponential | None = None
    constant: _Constant | None = None
    samples: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _one(self) -> _Distribution:
        if sum(d is not None for d in (self.lognormal, self.exponential, self.constant)) != 1:
            raise ValueError("give exactly one of lognormal, exponential, constant")
        return self

    def build(self) -> Distribution:
        d = self.lognormal or self.exponential or self.constant
        if isinstance(d, _LogNormal):
            return LogNormal(d.median, d.sigma)
        if isinstance(d, _Exponential):
            return Exponential(d.mean)
        assert d is not None  # the validator saw to it
        return Constant(d.value)


class _BatchCost(_Strict):
    base: _Distribution
    per_item: Seconds = 0.0
    per_skipped: Seconds = 0.0
    samples: Annotated[int, Field(ge=0)] | None = None

    def build(self) -> BatchCost:
        return BatchCost(self.base.build(), self.per_item, self.per_skipped)


class _ServiceTimes(_Strict):
    gateway_accept: _Distribution | None = None
    ledger_commit: _BatchCost | None = None
    payments_batch: _BatchCost | None = None
    light_weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    settlement_batch: _BatchCost | None = None
    reporting_batch: _BatchCost | None = None
    settlement_close: _BatchCost | None = None
    statement: _BatchCost | None = None
    sanctions_batch: _BatchCost | None = None
    aml_batch: _BatchCost | None = None
    fraud_batch: _BatchCost | None = None
    same_zone: _Distribution | None = None
    cross_zone: _Distribution | None = None
    client: _Distribution | None = None
    client_back: _Distribution | None = None
    ledger_writers: Annotated[int, Field(ge=0)] | None = None
    host_cores: Annotated[int, Field(ge=0)] | None = None
    client_cpu: Seconds | None = None
    consumer_poll: Seconds | None = None


class _File(_Strict):
    source: dict[str, Any] = Field(default_factory=dict)
    service_times: _ServiceTimes


@dataclass(frozen=True)
class Calibration:
    times: ServiceTimes
    source: dict[str, Any]
    path: str
    sha256: str

    def meta(self) -> dict[str, Any]:
        """What a run's meta.json says of the calibration it ran with."""
        return {"file": self.path, "sha256": self.sha256, "source": self.source}


def load_calibration(path: Path, flag: str = "--calibration") -> Calibration:
    """The file's service times over the defaults; CalibrationError names the field and rule."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CalibrationError(f"{flag}: cannot read {path}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise CalibrationError(f"{flag}: {path} is not YAML{where}") from None
    try:
        parsed = _File.model_validate(data)
        given: dict[str, Any] = {
            f.name: _build(getattr(parsed.service_times, f.name))
            for f in fields(ServiceTimes)
            if getattr(parsed.service_times, f.name) is not None
        }
        times = replace(DEFAULTS, **given)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise CalibrationError(f"{flag}: {path}: {where}: {first['msg']}") from None
    return Calibration(times, parsed.source, str(path), hashlib.sha256(raw).hexdigest())


def _build(
    value: _Distribution | _BatchCost | float | int,
) -> Distribution | BatchCost | float | int:
    return value if isinstance(value, float | int) else value.build()


def distribution_yaml(d: Distribution, samples: int | None = None) -> dict[str, Any]:
    if isinstance(d, LogNormal):
        out: dict[str, Any] = {"lognormal": {"median": d.median, "sigma": d.sigma}}
    elif isinstance(d, Exponential):
        out = {"exponential": {"mean": d.mean}}
    else:
        out = {"constant": {"value": d.value}}
    if samples is not None:
        out["samples"] = samples
    return out


def batch_yaml(cost: BatchCost, samples: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "base": distribution_yaml(cost.base),
        "per_item": cost.per_item,
        "per_skipped": cost.per_skipped,
    }
    if samples is not None:
        out["samples"] = samples
    return out
