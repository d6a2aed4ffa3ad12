"""What a calibration can tell the sim beyond service times: cores shared by the nodes of one
host, a ledger with one writer, consumers that poll. Each must change what the sim measures."""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simpy
import yaml
from sim_harness import QUICKSTART, quickstart_with
from typer.testing import CliRunner

from sim import export
from sim.node import Job, JobRun, Node
from sim.run import simulate
from sim.service_times import DEFAULTS, BatchCost, Constant, ServiceTimes
from testbed.cli import app
from testbed.commands import register

register(app)


class _Work(Job):
    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node

    def run(self) -> JobRun:
        yield self.node.compute(0.01)


def _completions(shared: bool) -> int:
    """Two nodes of 4 workers, 75 jobs/s each of 10 ms CPU, for 20 s: 1.5 cores of work."""
    env = simpy.Environment()
    nodes = [Node(env, f"n{i}", "gateway", "a", 4) for i in range(2)]
    if shared:
        host = simpy.Resource(env, capacity=1)
        for node in nodes:
            node.host = host
    rng = random.Random(1)

    def arrivals(node: Node) -> Generator[simpy.Event, Any, None]:
        while True:
            yield env.timeout(rng.expovariate(75.0))
            node.submit(_Work(node))

    for node in nodes:
        env.process(arrivals(node))
    env.run(until=20.0)
    return sum(node.completions for node in nodes)


def test_nodes_on_one_host_share_its_cores() -> None:
    alone, shared = _completions(shared=False), _completions(shared=True)
    assert 2_850 < alone < 3_150  # each node has CPU to spare: all ~3,000 jobs done
    assert 1_900 < shared <= 2_001  # one core: at most 100 jobs/s whoever sends them


def _run(times: ServiceTimes, rate: str = "100/s") -> dict[str, pd.DataFrame]:
    scenario = quickstart_with(
        workload={"rate": rate, "client": {"timeout": "5s", "retries": 0}}, faults={"timed": []}
    )
    return export.tables(simulate(scenario, 1, times=times))


def _acked(tables: dict[str, pd.DataFrame]) -> int:
    requests = tables["requests"]
    return int(requests.loc[requests["status"] == 202, "key"].nunique())


def test_one_ledger_writer_caps_the_commits() -> None:
    slow = replace(DEFAULTS, ledger_commit=BatchCost(Constant(0.02), 0.0))  # 50 commits/s each
    parallel = _acked(_run(slow))  # the quickstart's 8 connections: 400 commits/s
    one_writer = _acked(_run(replace(slow, ledger_writers=1)))
    assert parallel > 950  # ~1,000 payments in 10 s, every one answered
    assert one_writer < 500  # at least one commit per payment, 50 a second


def test_polling_consumers_find_new_payments_later() -> None:
    def processing_p50(tables: dict[str, pd.DataFrame]) -> float:
        p = tables["payments"]
        return float(np.nanmedian(p["posted_at"] - p["received_at"]))

    woken = processing_p50(_run(DEFAULTS))
    polling = processing_p50(_run(replace(DEFAULTS, consumer_poll=0.2)))
    assert woken < 0.05
    assert polling > 0.08  # a poll every 200 ms: on average 100 ms before a payment is seen


def _ack_p50(tables: dict[str, pd.DataFrame]) -> float:
    r = tables["requests"]
    first = r[(r["attempt"] == 1) & (r["status"] == 202)]
    return float(np.median(first["done_at"] - first["intended_at"]))


def test_a_slow_way_back_delays_the_answer_not_the_payment() -> None:
    back = _run(replace(DEFAULTS, client_back=Constant(0.2)))
    assert _ack_p50(back) > 0.2  # the 202 reads 200 ms late ...
    p = back["payments"]
    assert float(np.nanmedian(p["posted_at"] - p["received_at"])) < 0.05  # ... not the posting
    assert _ack_p50(_run(DEFAULTS)) < 0.05


def test_the_load_generator_competes_for_the_hosts_cores() -> None:
    one_core = replace(DEFAULTS, host_cores=1, gateway_accept=Constant(0.001))
    quiet = _ack_p50(_run(one_core))
    busy = _ack_p50(_run(replace(one_core, client_cpu=0.008)))  # 80% of the core at 100/s
    assert busy > quiet + 0.002  # the gateway's CPU now waits for the generator's


def test_a_failing_calibrated_run_names_its_calibration_in_the_reproduce_command(
    tmp_path: Path,
) -> None:
    calibration = tmp_path / "c.yaml"
    calibration.write_text("service_times: {client: {constant: {value: 0.01}}}\n")
    data = yaml.safe_load(QUICKSTART.read_text())
    data.update(duration="2s", slos=["ack.p99 < 1ms"])  # two 10 ms client legs: fails
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    done = CliRunner().invoke(
        app, ["run", str(path), "--calibration", str(calibration), "--out", str(tmp_path / "r")]
    )
    assert done.exit_code == 1, done.output
    assert f"--seed 1 --calibration {calibration}" in " ".join(done.output.split())
