"""`python -m sim.profile SCENARIO`: where a simulated payment's time goes, by stage.

Runs one sim run under cProfile and splits its time by stage: each handler the real workers
also run (with the records, events and ledger work inside it), the consumers' fetches, the
sim's drain check and samplers, and the rest (SimPy, nodes, network, clients, the consumer
engine's steps, commits). Below the table, the shares of self time that cut across the stages:
JSON, the memory store, the SimPy kernel. docs/sim.md shows it for quickstart and swarm.

cProfile charges every Python call, so call-heavy code looks slower than it runs: the shares
say where to look, `python -m sim.bench` says how fast it is.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from collections.abc import Callable
from pathlib import Path

from scenarios.loader import load_scenario
from sim.run import simulate

Where = Callable[[str, str], bool]
"""(file, function name) -> whether a profile row belongs to it."""


def _in(file_suffix: str, *names: str) -> Where:
    return lambda file, name: file.endswith(file_suffix) and name in names


STAGES: tuple[tuple[str, Where], ...] = (
    ("drain check", _in("sim/system.py", "settled_everything")),
    ("gateway: accept_payment and its commit", _in("sim/gateway.py", "commit_accept")),
    (
        "payments handler (saga, ledger, records, events)",
        _in("payments.py", "handle_payment_events"),
    ),
    (
        "settlement handler and tasks",
        lambda file, name: (
            _in("service/settlement.py", "handle_settlement_events", "ingest_from_feed")(file, name)
            or _in("service/members.py", "_close", "_mark_sent")(file, name)
            or _in("adapters/bank_partner.py", "submit", "statements_after")(file, name)
        ),
    ),
    ("reporting projector", _in("service/projector.py", "handle_reporting_events")),
    ("idempotency purge", _in("service/idempotency.py", "purge_expired")),
    ("consumer fetches", _in("service/consumer.py", "fetch")),
    ("samplers (nodes, lags)", _in("sim/system.py", "_sampler")),
)
ACROSS: tuple[tuple[str, Where], ...] = (
    (
        "JSON encode/decode",
        lambda file, name: (
            "json" in file or file.endswith("core/serial.py") or (file == "~" and "json" in name)
        ),
    ),
    ("memory store", lambda file, name: file.endswith("adapters/memory.py")),
    ("SimPy kernel", lambda file, name: "simpy" in file),
)


def stage_table(stats: pstats.Stats) -> list[tuple[str, float]]:
    """(stage, share of the run's time): the stages, the rest, then the cross-cutting shares."""
    rows: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in rows.values())

    def cumulative(where: Where) -> float:
        return sum(ct for (file, _, name), (_, _, _, ct, _) in rows.items() if where(file, name))

    def own(where: Where) -> float:
        return sum(tt for (file, _, name), (_, _, tt, _, _) in rows.items() if where(file, name))

    table = [(name, cumulative(where) / total) for name, where in STAGES]
    table.append(("the rest: SimPy, nodes, network, clients, engine steps, commits", 0.0))
    table[-1] = (table[-1][0], 1.0 - sum(share for _, share in table))
    table += [(f"across stages: {name}", own(where) / total) for name, where in ACROSS]
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.profile", description=__doc__)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds of arrivals")
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario).scenario
    if args.duration is not None:
        scenario = scenario.model_copy(update={"duration": args.duration})
    seed = scenario.seed if args.seed is None else args.seed
    profile = cProfile.Profile()
    run = profile.runcall(simulate, scenario, seed)
    payments = sum(1 for r in run.system.clients.requests if r.done and not r.gave_up)
    print(f"{args.scenario.name}, seed {seed}: {payments} payments acknowledged")
    for name, share in stage_table(pstats.Stats(profile)):
        print(f"{100 * share:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
