"""The scenario file: topology, workload, faults, SLOs, seed and run length, as pydantic models.

Both runtimes take the same file, so the schema says what to model, never how one runtime
models it. Every model forbids unknown fields: a misspelt key is an error, not a silent default.
Durations and rates are written as people write them (`250ms`, `1500/s`, see units.py).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from reference_impl.bugs import BUGS, check_bug

# The fault models live in fault_specs.py; re-exported so `scenarios.schema` stays the one place
# to import scenario models from.
from scenarios.checks_spec import Checks as Checks
from scenarios.checks_spec import check_nodes
from scenarios.fault_specs import Background as Background
from scenarios.fault_specs import BackgroundCrashes as BackgroundCrashes
from scenarios.fault_specs import BackgroundLatency as BackgroundLatency
from scenarios.fault_specs import Crash as Crash
from scenarios.fault_specs import Fault as Fault
from scenarios.fault_specs import Faults, fault_problems
from scenarios.fault_specs import Latency as Latency
from scenarios.fault_specs import TimedFault as TimedFault

# Likewise the fraud patterns (fraud.py).
from scenarios.fraud import AccountTakeover as AccountTakeover
from scenarios.fraud import CardTesting as CardTesting
from scenarios.fraud import Fraud, fraud_problems
from scenarios.fraud import MuleChain as MuleChain
from scenarios.fraud import SanctionedPayee as SanctionedPayee
from scenarios.fraud import Structuring as Structuring
from scenarios.slo import SloError, parse_slo
from scenarios.units import Duration, Rate


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Sections(_Model):
    """A model with optional sections added after scenarios were first written: one left out
    (None) is left out of the resolved YAML too, which so stays what it was before it existed."""

    _optional: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self._optional:
            if data.get(name, ...) is None:
                del data[name]
        return data


def _check_slo(text: str) -> str:
    try:
        parse_slo(text)
    except SloError as e:
        raise ValueError(str(e)) from None
    return text


SloText = Annotated[str, AfterValidator(_check_slo)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)]
BugName = Annotated[str, AfterValidator(check_bug), WithJsonSchema({"enum": sorted(BUGS)})]


# -- topology -------------------------------------------------------------------------------
class RateLimit(_Model):
    """The gateway's per-tenant token bucket: `rate` tokens a second, at most `burst` saved up.

    `shared`: one bucket per tenant for every gateway replica (Redis in load mode); otherwise
    each replica keeps its own, as separate processes would, so the tenant gets up to
    replicas x `rate`. A request over the limit is answered 429 with Retry-After."""

    rate: Rate = Field(description="tokens (requests) per second per tenant")
    burst: int | None = Field(
        default=None, ge=1, le=10_000_000, description="bucket size; default: the rate (>= 1)"
    )
    shared: bool = Field(default=False, description="one bucket across replicas (Redis)")

    @model_validator(mode="after")
    def _positive(self) -> RateLimit:
        if self.rate <= 0:
            raise ValueError("rate: must be more than 0 per second")
        return self

    @property
    def tokens(self) -> int:
        """The bucket size: `burst`, or the rate (as the gateway's default), at least 1."""
        return self.burst if self.burst is not None else max(1, int(self.rate))


class Gateway(_Sections):
    _optional = ("rate_limit",)

    replicas: int = Field(default=2, ge=1, le=64)
    workers: int = Field(default=4, ge=1, le=1024, description="request handlers per replica")
    rate_limit: RateLimit | None = Field(
        default=None, description="per-tenant request limit (429 over it); none: unlimited"
    )


class PaymentsWorkers(_Model):
    workers: int = Field(default=2, ge=1, le=256, description="consumers in the 'payments' group")
    batch: int = Field(
        default=64, ge=1, le=10_000, description="most events a worker takes at once"
    )
    session_timeout: Duration = Field(
        default=1.0, description="how long a dead consumer keeps partitions"
    )


class Ledger(_Model):
    connections: int = Field(
        default=8, ge=1, le=1024, description="concurrent commits on the primary"
    )
    replicas: int = Field(default=1, ge=0, le=8)
    replication: Literal["sync", "async"] = "sync"
    replication_lag: Duration = Field(default=0.005, description="mean lag of an async replica")


class EventLog(_Model):
    partitions: int = Field(default=8, ge=1, le=1024)


class Settlement(_Model):
    cutoff: Duration = Field(default=30.0, description="interval between settlement cut-offs")


class BankPartner(_Model):
    """A partner and how it behaves all run long (a `partner` fault changes it for a window)."""

    name: Name
    statement_delay: Duration = Field(
        default=0.0, description="after a period ends, until its statement"
    )
    late_probability: float = Field(default=0.0, ge=0, le=1, description="per batch: a day late")
    duplicate_line_probability: float = Field(default=0.0, ge=0, le=1)
    missing_line_probability: float = Field(default=0.0, ge=0, le=1)
    fee_probability: float = Field(default=0.0, ge=0, le=1)
    fee_amount: int = Field(default=0, ge=0, description="minor units deducted as a fee")
    reversal_probability: float = Field(default=0.0, ge=0, le=1)


class Topology(_Model):
    zones: list[Name] = Field(default_factory=lambda: ["a"], min_length=1)
    gateway: Gateway = Field(default_factory=Gateway)
    payments: PaymentsWorkers = Field(default_factory=PaymentsWorkers)
    ledger: Ledger = Field(default_factory=Ledger)
    event_log: EventLog = Field(default_factory=EventLog)
    settlement: Settlement = Field(default_factory=Settlement)
    bank_partners: list[BankPartner] = Field(
        default_factory=lambda: [BankPartner(name="bank-a", statement_delay=0.0)], min_length=1
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Topology:
        if len(set(self.zones)) != len(self.zones):
            raise ValueError("zones: names must be unique")
        names = [b.name for b in self.bank_partners]
        if len(set(names)) != len(names):
            raise ValueError("bank_partners: names must be unique")
        taken = {"ledger", "settlement"}
        clash = [n for n in names if n in taken or n.startswith(("gateway-", "payments-"))]
        if clash:
            raise ValueError(f"bank_partners: name {clash[0]!r} is a node name")
        return self


# -- workload -------------------------------------------------------------------------------
class Amount(_Model):
    """Payment amounts in minor units: lognormal around `median`, clipped to [min, max]."""

    distribution: Literal["lognormal", "uniform", "fixed"] = "lognormal"
    median: int = Field(default=2_500, ge=1)
    sigma: float = Field(default=1.0, ge=0, le=5)
    min: int = Field(default=1, ge=1)
    max: int = Field(default=1_000_000, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Amount:
        if not self.min <= self.median <= self.max:
            raise ValueError("median: must lie between min and max")
        return self


class RateStep(_Model):
    at: Duration
    rate: Rate


class Burst(_Model):
    at: Duration
    duration: Duration
    rate: Rate = Field(description="extra arrivals per second on top of the profile")


class Client(_Model):
    timeout: Duration = 2.0
    retries: int = Field(default=3, ge=0, le=100)
    backoff: Duration = Field(default=0.1, description="first retry delay; doubles each attempt")
    backoff_max: Duration = 5.0
    jitter: float = Field(
        default=0.5, ge=0, le=1, description="fraction of the delay drawn at random"
    )
    duplicate_probability: float = Field(default=0.0, ge=0, le=1)


class Workload(_Sections):
    _optional = ("fraud",)

    tenants: int = Field(default=1, ge=1, le=1000)
    accounts: int = Field(default=100, ge=2, le=1_000_000, description="accounts per tenant")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    initial_balance: int = Field(default=10_000_000, ge=0, description="minor units per account")
    zipf: float = Field(
        default=1.0, ge=0, le=5, description="account popularity skew (0 = uniform)"
    )
    amount: Amount = Field(default_factory=Amount)
    rate: Rate = Field(description="open-model arrivals per second")
    profile: list[RateStep] = Field(
        default_factory=list, description="from each `at` on, the rate is `rate`"
    )
    bursts: list[Burst] = Field(default_factory=list)
    client: Client = Field(default_factory=Client)
    fraud: Fraud | None = Field(
        default=None, description="labelled fraud patterns mixed into the traffic (fraud.py)"
    )

    @model_validator(mode="after")
    def _profile_sorted(self) -> Workload:
        ats = [s.at for s in self.profile]
        if ats != sorted(ats):
            raise ValueError("profile: steps must be in time order")
        return self

    @model_validator(mode="after")
    def _fraud_fits(self) -> Workload:
        if self.fraud is not None:
            problems = fraud_problems(self.fraud, self.accounts, self.initial_balance)
            if problems:
                raise ValueError(problems[0])
        return self


# -- the scenario ---------------------------------------------------------------------------
class Scenario(_Model):
    description: str = Field(min_length=1)
    seed: int = Field(default=1, ge=0, lt=2**63)
    duration: Duration
    drain: Duration = 30.0
    topology: Topology = Field(default_factory=Topology)
    workload: Workload
    faults: Faults = Field(default_factory=Faults)
    slos: list[SloText] = Field(default_factory=list)
    bugs: list[BugName] = Field(
        default_factory=list, description="bug-zoo variants to switch on (docs/bug-zoo.md)"
    )
    checks: Checks = Field(
        default_factory=Checks, description="compliance checks: sanctions, AML, fraud"
    )

    @model_validator(mode="after")
    def _faults_in_topology(self) -> Scenario:
        nodes = node_names(self.topology, self.checks)
        problems = fault_problems(self.faults, self.topology, nodes)
        remote = self.checks.on and "sanctions" in self.checks.run and self.checks.provider
        windows = [*self.faults.timed, *self.faults.background.poisson]
        if not remote and any(f.kind == "provider" for f in windows):
            problems.append(
                "faults: a provider fault needs checks on, with sanctions in checks.run and"
                " checks.provider set (names screened at an external provider)"
            )
        if problems:
            raise ValueError(problems[0])
        return self


def node_names(topology: Topology, checks: Checks | None = None) -> list[str]:
    """The names faults and the nodes table use, in a stable order (the check consumers, when
    the checks run in parallel, last)."""
    return [
        *(f"gateway-{i + 1}" for i in range(topology.gateway.replicas)),
        *(f"payments-{i + 1}" for i in range(topology.payments.workers)),
        "ledger",
        "settlement",
        *(b.name for b in topology.bank_partners),
        *(check_nodes(checks) if checks is not None else []),
    ]
