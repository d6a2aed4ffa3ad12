"""The `faults` section of a scenario: what can go wrong, when, and how often.

Every fault kind is one model usable two ways: in `faults.timed` with an `at` (a window from
`at` to `at + duration`), and in `faults.background.poisson` with a `rate` (windows arriving as a
Poisson process, each as long as `duration`). A target left out of a background fault is drawn
at random per window, so one line can say "partition some pair of zones now and then".
`faults.swarm: true` draws which families are on, and their rates, from the seed (swarm
testing): one scenario then covers many fault mixes across a campaign.

Lives apart from schema.py because it is a third of the scenario format on its own; schema.py
re-exports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scenarios.units import Duration, Rate

if TYPE_CHECKING:
    from scenarios.schema import Topology

CLIENTS = "clients"
"""The endpoint name of the clients (outside every zone) in `between`."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Window(_Model):
    at: Duration | None = Field(default=None, description="start (timed faults only)")
    rate: Rate | None = Field(default=None, description="windows per second (background only)")
    duration: Duration = Field(default=1.0, description="how long each window lasts")


Between = list[str] | None
_BETWEEN = Field(
    default=None,
    min_length=1,
    max_length=2,
    description="one or two endpoints (zone or node names, or 'clients'); none: every link",
)


class Crash(_Window):
    """Crash `node`: its volatile state and in-flight work are lost; it restarts after."""

    kind: Literal["crash"]
    node: str | None = Field(default=None, description="e.g. payments-1, ledger; none: random")


class Pause(_Window):
    """Stop `node` like SIGSTOP: it keeps its state and queue, takes no work until resumed."""

    kind: Literal["pause"]
    node: str | None = None


class ZoneOutage(_Window):
    """Every node of `zone` crashes together and comes back together."""

    kind: Literal["zone-outage"]
    zone: str | None = None


class Latency(_Window):
    """Add `extra` one-way latency to every message between two zones (or everywhere)."""

    kind: Literal["latency"]
    zones: list[str] | None = Field(default=None, min_length=1, max_length=2)
    extra: Duration = 0.05


class Loss(_Window):
    """Drop client<->gateway messages with `probability` (requests and replies alike)."""

    kind: Literal["loss"]
    between: Between = _BETWEEN
    probability: float = Field(default=0.1, ge=0, le=1)


class Duplicate(_Window):
    """Deliver client<->gateway messages twice with `probability`."""

    kind: Literal["duplicate"]
    between: Between = _BETWEEN
    probability: float = Field(default=0.1, ge=0, le=1)


class Reorder(_Window):
    """Hold messages back by up to `extra` with `probability`, so later ones overtake them."""

    kind: Literal["reorder"]
    between: Between = _BETWEEN
    probability: float = Field(default=0.2, ge=0, le=1)
    extra: Duration = 0.05


class Partition(_Window):
    """Cut the link between two endpoints (zones or nodes); `one_way`: only first -> second."""

    kind: Literal["partition"]
    between: list[str] | None = Field(default=None, min_length=2, max_length=2)
    one_way: bool = False


class Clog(_Window):
    """Swizzle-clogging: every `period`, clog a random `fraction` of the links between
    endpoints (zones and clients) and unclog the rest, until the window ends."""

    kind: Literal["clog"]
    period: Duration = 0.5
    fraction: float = Field(default=0.5, gt=0, le=1)


class Disk(_Window):
    """The ledger's disk: each commit takes `slow` longer and fails with `fail_probability`."""

    kind: Literal["disk"]
    slow: Duration = 0.0
    fail_probability: float = Field(default=0.0, ge=0, le=1)


class Failover(_Window):
    """The ledger primary dies and a replica is promoted after `duration`. With async
    replication, acknowledged commits the replica had not received are lost."""

    kind: Literal["failover"]


class LeaderFailover(_Window):
    """No longer a fault kind: kept only to say what replaced it."""

    kind: Literal["leader-failover"]
    partitions: list[int] | None = None

    @model_validator(mode="after")
    def _replaced(self) -> LeaderFailover:
        raise ValueError(
            "kind leader-failover was removed: the event log lives in the store, so its leader"
            " is the ledger primary (use kind failover); for consumer-group churn use rebalance,"
            " or pause or crash a consumer node"
        )


GROUPS = Literal["payments", "settlement", "reporting"]


class Rebalance(_Window):
    """A forced rebalance of a consumer group: every claim is revoked (its epoch bumped, so
    work fetched but not committed is refused) and every member must rejoin, which it does at
    its next heartbeat; the window's end does nothing more."""

    kind: Literal["rebalance"]
    group: GROUPS | None = None


class Poison(_Window):
    """Handling an event fails for a `probability` share of a group's events (drawn once per
    event) while the window lasts, as a malformed record or a handler bug would: the group
    retries the event with backoff, then gives up on it (payments: compensation)."""

    kind: Literal["poison"]
    group: GROUPS = "payments"
    probability: float = Field(default=0.05, gt=0, le=1)


class ProviderTrouble(_Window):
    """The sanctions-screening provider (`checks.provider`) is slow or failing for the window:
    every call takes `latency` and fails with `error_rate`, then it is as configured again."""

    kind: Literal["provider"]
    latency: Duration = 0.5
    error_rate: float = Field(default=0.0, ge=0, le=1)


class PartnerChaos(_Window):
    """A bank partner misbehaves for the window: unreachable, late, duplicate or missing
    lines, fees, reversals, late statements."""

    kind: Literal["partner"]
    partner: str | None = None
    outage: bool = False
    late_probability: float = Field(default=0.0, ge=0, le=1)
    duplicate_line_probability: float = Field(default=0.0, ge=0, le=1)
    missing_line_probability: float = Field(default=0.0, ge=0, le=1)
    fee_probability: float = Field(default=0.0, ge=0, le=1)
    fee_amount: int = Field(default=0, ge=0)
    reversal_probability: float = Field(default=0.0, ge=0, le=1)
    statement_delay: Duration = 0.0


class ClockSkew(_Window):
    """The settlement node's clock runs `offset` ahead (or `behind`), which moves its cut-offs
    and so which payments fall into which batch."""

    kind: Literal["clock-skew"]
    offset: Duration = 1.0
    behind: bool = False


class RedisDown(_Window):
    """The Redis server behind a shared rate limit (`topology.gateway.rate_limit.shared`) is
    killed and started again, empty, after `duration`. The gateway fails closed while it is
    down (503); after the restart every tenant's bucket starts full."""

    kind: Literal["redis"]


Fault = Annotated[
    Crash
    | Pause
    | ZoneOutage
    | Latency
    | Loss
    | Duplicate
    | Reorder
    | Partition
    | Clog
    | Disk
    | Failover
    | LeaderFailover
    | Rebalance
    | Poison
    | ProviderTrouble
    | PartnerChaos
    | ClockSkew
    | RedisDown,
    Field(discriminator="kind"),
]
TimedFault = Fault


class BackgroundCrashes(_Model):
    rate: Rate = Field(description="crashes per second per node")
    down: Duration = 1.0
    nodes: list[str] = Field(min_length=1)


class BackgroundLatency(_Model):
    rate: Rate = Field(description="latency spikes per second")
    duration: Duration = 0.5
    extra: Duration = 0.05


class Background(_Model):
    crashes: BackgroundCrashes | None = None
    latency: BackgroundLatency | None = None
    poisson: list[Fault] = Field(
        default_factory=list, description="any fault kind with a `rate` instead of an `at`"
    )

    def families(self) -> list[Fault]:
        """Every background family as a fault with a rate: a crash per node, the latency
        spikes, then the Poisson list (the order both runtimes draw their windows in)."""
        found: list[Fault] = []
        if (spec := self.crashes) is not None:
            found += [
                Crash(kind="crash", node=n, rate=spec.rate, duration=spec.down) for n in spec.nodes
            ]
        if (lat := self.latency) is not None:
            found.append(
                Latency(kind="latency", rate=lat.rate, duration=lat.duration, extra=lat.extra)
            )
        return [*found, *self.poisson]


class Faults(_Model):
    timed: list[Fault] = Field(default_factory=list)
    background: Background = Field(default_factory=Background)
    swarm: bool = Field(default=False, description="draw fault families and rates from the seed")


def fault_problems(faults: Faults, topology: Topology, nodes: list[str]) -> list[str]:
    """What in `faults` does not fit the topology; empty when everything does."""
    zones = list(topology.zones)
    partners = [b.name for b in topology.bank_partners]
    endpoints = [*zones, *nodes, CLIENTS]
    problems: list[str] = []
    crashable = faults.background.crashes
    named = [f.node for f in faults.timed if isinstance(f, Crash | Pause)]
    named += [f.node for f in faults.background.poisson if isinstance(f, Crash | Pause)]
    for node in [*named, *(crashable.nodes if crashable else [])]:
        if node is not None and node not in nodes:
            problems.append(f"faults: no node {node!r} (nodes: {', '.join(nodes)})")
    for where, items, timed in (
        ("faults.timed", faults.timed, True),
        ("faults.background.poisson", faults.background.poisson, False),
    ):
        for i, f in enumerate(items):
            problems += _window_problems(f"{where}[{i}]", f, timed)
            problems += _target_problems(f"{where}[{i}]", f, timed, zones, endpoints, partners)
            if isinstance(f, Failover) and topology.ledger.replicas == 0:
                problems.append(f"{where}[{i}]: failover needs topology.ledger.replicas >= 1")
            limit = topology.gateway.rate_limit
            if isinstance(f, RedisDown) and (limit is None or not limit.shared):
                problems.append(
                    f"{where}[{i}]: a redis fault needs a shared rate limit"
                    " (topology.gateway.rate_limit with shared: true)"
                )
    return problems


def _window_problems(where: str, f: _Window, timed: bool) -> list[str]:
    if timed and (f.at is None or f.rate is not None):
        return [f"{where}: a timed fault needs `at` and no `rate`"]
    if not timed and (f.rate is None or f.at is not None):
        return [f"{where}: a background fault needs `rate` and no `at`"]
    return []


def _target_problems(
    where: str, f: _Window, timed: bool, zones: list[str], endpoints: list[str], partners: list[str]
) -> list[str]:
    if isinstance(f, Latency) and f.zones is not None and not set(f.zones) <= set(zones):
        return [f"{where}: zones {f.zones} are not all in topology.zones"]
    if isinstance(f, Loss | Duplicate | Reorder | Partition) and f.between is not None:
        unknown = [e for e in f.between if e not in endpoints]
        if unknown:
            return [f"{where}.between: no zone or node {unknown[0]!r}"]
    if isinstance(f, ZoneOutage) and f.zone is not None and f.zone not in zones:
        return [f"{where}.zone: no zone {f.zone!r} in topology.zones"]
    if isinstance(f, PartnerChaos) and f.partner is not None and f.partner not in partners:
        return [f"{where}.partner: no bank partner {f.partner!r}"]
    if timed and isinstance(f, Crash | Pause) and f.node is None:
        return [f"{where}.node: a timed {f.kind} needs a node"]
    if timed and isinstance(f, Partition) and f.between is None:
        return [f"{where}.between: a timed partition needs two endpoints"]
    return []
