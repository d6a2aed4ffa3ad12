"""What of a scenario's topology the load runtime honours, refuses, or runs without.

The load runtime (loadtest/system.py) starts the reference system from the topology: the
gateway's `replicas` (uvicorn workers), `payments.workers`, `batch` and `session_timeout`,
`event_log.partitions` and `settlement.cutoff` (the bank partner's day is as long). The rest
has no counterpart in real processes on one machine:

- **Refused** (`check_topology`, before any process starts): a bank partner's behaviour other
  than the default (perfect) one. The settlement worker runs one perfect partner, `bank-a`, so
  a scenario that asks for late statements, missing lines, fees or reversals would pass without
  ever exercising them.
- **Not modelled** (`not_modelled`, listed in the verdict, summary.json and report.html):
  settings that change capacity, latency or names in the sim but cannot make a load run's
  verdict claim something it did not test: zones (one machine), other partners' names (every
  batch goes to `bank-a`), the gateway's handlers per replica (uvicorn serves a worker's
  requests on one event loop), the ledger's connections and its replicas (one SQLite file or
  one PostgreSQL database, no replica; failover faults are listed as not applied).
"""

from __future__ import annotations

from typing import Any

from reference_impl.adapters.bank_partner import PartnerBehaviour
from reference_impl.service.settlement import SettlementConfig
from scenarios.schema import Scenario

_BEHAVIOUR = (
    "statement_delay", "late_probability", "duplicate_line_probability",
    "missing_line_probability", "fee_probability", "fee_amount", "reversal_probability",
)  # fmt: skip


def check_topology(scenario: Scenario) -> None:
    """ValueError, one line naming the scenario field and the rule, for a topology setting the
    load runtime cannot honour and must not ignore: a bank partner that is not perfect."""
    perfect = PartnerBehaviour()
    for i, partner in enumerate(scenario.topology.bank_partners):
        for name in _BEHAVIOUR:
            value = getattr(partner, name)
            if value != getattr(perfect, name):
                raise ValueError(
                    f"topology.bank_partners[{i}].{name}: load mode runs a perfect bank partner "
                    f"(partner behaviours are sim mode only); got {value!r}"
                )


def not_modelled(scenario: Scenario) -> list[dict[str, Any]]:
    """The topology settings a load run of our processes runs without, each with its value
    and why: [{"setting", "value", "reason"}], in the schema's order."""
    topo = scenario.topology
    rows: list[dict[str, Any]] = []
    if len(topo.zones) > 1:
        rows.append(_row("topology.zones", ", ".join(topo.zones),
                         "every process runs on this one machine"))  # fmt: skip
    (reference,) = SettlementConfig().partners
    names = [p.name for p in topo.bank_partners]
    if names != [reference]:
        rows.append(_row("topology.bank_partners", ", ".join(names),
                         f"the settlement worker settles everything with {reference}"))  # fmt: skip
    rows.append(_row("topology.gateway.workers", topo.gateway.workers,
                     "a uvicorn worker serves all its requests on one event loop"))  # fmt: skip
    rows.append(_row("topology.ledger.connections", topo.ledger.connections,
                     "every process holds its own connection to the store"))  # fmt: skip
    if topo.ledger.replicas:
        rows.append(_row(
            "topology.ledger.replicas",
            f"{topo.ledger.replicas} ({topo.ledger.replication})",
            "the store is one SQLite file or one PostgreSQL database, without a replica",
        ))  # fmt: skip
    return rows


def _row(setting: str, value: object, reason: str) -> dict[str, Any]:
    return {"setting": setting, "value": str(value), "reason": reason}


__all__ = ["check_topology", "not_modelled"]
