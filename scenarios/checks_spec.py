"""The `checks` section of a scenario: the system's compliance checks and how they run.

`mode: parallel` runs sanctions, AML and fraud as consumer groups of their own beside the
payments group, which waits for their decisions (up to `timeout`, then `on_timeout`);
`mode: sequential` runs them one after the other inside the payments worker, for comparison;
`off` (the default) runs none, as before the checks existed. docs/compliance.md says what each
check does. Lives apart from schema.py, which re-exports it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from reference_impl.service.checks import CheckerSettings, ChecksConfig
from scenarios.units import Duration

CheckName = Literal["sanctions", "aml", "fraud"]
ALL: tuple[CheckName, ...] = ("sanctions", "aml", "fraud")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SanctionsSpec(_Model):
    threshold: float = Field(
        default=0.90, ge=0.5, le=1.0, description="name score at which a payment is held"
    )
    reject_at: float = Field(
        default=0.97, ge=0.5, le=1.0, description="name score at which it is rejected"
    )

    @model_validator(mode="after")
    def _ordered(self) -> SanctionsSpec:
        if self.reject_at < self.threshold:
            raise ValueError("reject_at: must be at or above threshold")
        return self


class AmlSpec(_Model):
    """The AML rules' thresholds (reference_impl/core/aml.py `AmlRules`); one left out keeps
    the rules' default. A scenario that compresses hours into seconds scales the windows."""

    velocity_window: Duration | None = Field(default=None, description="default 1h")
    velocity_count: int | None = Field(default=None, ge=1, description="default 20")
    velocity_amount: int | None = Field(default=None, ge=1, description="default 5,000,000")
    reporting_threshold: int | None = Field(default=None, ge=1, description="default 1,000,000")
    structuring_margin: float | None = Field(default=None, gt=0, lt=1, description="default 0.1")
    structuring_window: Duration | None = Field(default=None, description="default 24h")
    structuring_count: int | None = Field(default=None, ge=1, description="default 3")
    passthrough_window: Duration | None = Field(default=None, description="default 10min")
    passthrough_ratio: float | None = Field(default=None, gt=0, description="default 0.8")
    passthrough_sources: int | None = Field(default=None, ge=1, description="default 3")


class FraudSpec(_Model):
    model: str | None = Field(
        default=None,
        description="directory of a model saved by `testbed fraud train` (rules when absent)",
    )


def _off(value: object) -> object:
    """YAML reads a bare `off` as false: the mode is meant."""
    return "off" if value is False else value


class Provider(_Model):
    """Sanctions screening at an external provider (a vendor's API) instead of in-process: each
    name screened costs a call of `latency`, which fails with `error_rate` (retried with backoff
    by the consumer). Load mode starts a stub provider process (reference_impl/compliance/
    provider.py); the sim charges the latency and draws the failures."""

    latency: Duration = Field(default=0.02, description="per call")
    error_rate: float = Field(default=0.0, ge=0, lt=1, description="share of calls that fail")


class Checks(_Model):
    mode: Annotated[Literal["off", "parallel", "sequential"], BeforeValidator(_off)] = "off"
    run: list[CheckName] = Field(default_factory=lambda: list(ALL), description="which checks run")
    timeout: Duration = Field(
        default=2.0, description="how long a payment waits for the parallel checks"
    )
    on_timeout: Literal["hold", "approve", "reject"] = Field(
        default="hold", description="what a check that has not answered by the timeout counts as"
    )
    workers: int = Field(default=1, ge=1, le=64, description="consumers per check group")
    sanctions: SanctionsSpec = Field(default_factory=SanctionsSpec)
    aml: AmlSpec = Field(default_factory=AmlSpec)
    fraud: FraudSpec = Field(default_factory=FraudSpec)
    provider: Provider | None = Field(
        default=None, description="screen names at an external provider (default: in-process)"
    )

    @model_validator(mode="after")
    def _distinct(self) -> Checks:
        if len(set(self.run)) != len(self.run):
            raise ValueError("run: each check at most once")
        if self.timeout <= 0:
            raise ValueError("timeout: must be above 0")
        return self

    @property
    def on(self) -> bool:
        return self.mode != "off" and bool(self.run)

    def config(self) -> ChecksConfig:
        """The section as the reference system's configuration (the same in both runtimes)."""
        if not self.on:
            return ChecksConfig()
        return ChecksConfig(self.mode, tuple(self.run), self.timeout, self.on_timeout)

    def meta(self) -> dict[str, object]:
        """What the audit needs to know of the checks, for a run record's meta (reports/
        audit_compliance.py): which ran, the timeout and its policy."""
        return {
            "mode": self.mode,
            "run": list(self.run),
            "timeout": self.timeout,
            "on_timeout": self.on_timeout,
        }

    def settings(self) -> CheckerSettings:
        return CheckerSettings(
            run=tuple(self.run),
            sanctions_threshold=self.sanctions.threshold,
            sanctions_reject_at=self.sanctions.reject_at,
            aml={
                name: value
                for name in AmlSpec.model_fields
                if (value := getattr(self.aml, name)) is not None
            },
            fraud_model=self.fraud.model,
        )


def check_nodes(checks: Checks) -> list[str]:
    """The names of the check consumers' nodes (parallel mode), for faults and the nodes table."""
    if not checks.on or checks.mode != "parallel":
        return []
    return [f"{name}-{i + 1}" for name in checks.run for i in range(checks.workers)]
