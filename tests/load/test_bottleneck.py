"""The generator's verdict on itself, and its per-second rates."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from loadtest.bottleneck import (
    RATE_COLUMNS,
    SAMPLE_COLUMNS,
    generator_verdict,
    mean_rates,
    per_second_rates,
)
from scenarios.schema import Workload


def process(name: str, sent: int = 1000, late_idle: int = 0, late_waited: int = 0,
            unsent: int = 0, users: int = 50) -> dict[str, Any]:  # fmt: skip
    counters = {"sent": sent, "late_idle": late_idle, "late_waited": late_waited,
                "unsent": unsent, "users": users}  # fmt: skip
    return {"process": name, "counters": counters, "samples": []}


def samples(cpu_by_process: dict[str, list[float]], start: float = 10.0) -> pd.DataFrame:
    rows = [
        [p, start + i, c, 0, 0] for p, cpus in cpu_by_process.items() for i, c in enumerate(cpus)
    ]
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def verdict(procs: list[dict[str, Any]], cpu: dict[str, list[float]]) -> tuple[bool, str]:
    return generator_verdict(procs, samples(cpu), 10.0, 5.0, 0.010, 0.002)


def test_a_generator_that_kept_its_schedule_is_not_the_bottleneck() -> None:
    procs = [process("worker-0", late_idle=10, late_waited=10), process("worker-1")]
    assert verdict(procs, {"worker-0": [0.5] * 6, "worker-1": [0.6] * 6}) == (False, "")


def test_a_process_near_a_full_core_is() -> None:
    # Samples outside the arrival window [10, 15] do not count.
    bound, reason = verdict(
        [process("worker-0"), process("worker-1")],
        {"worker-0": [0.5] * 6 + [1.0] * 4, "worker-1": [0.95] * 6},
    )
    assert bound and reason == "worker-1 used 95% of a core while sending"


def test_late_sends_with_an_idle_user_mean_the_generator_fell_behind() -> None:
    bound, reason = verdict([process("local", sent=1000, late_idle=11)], {"local": [0.3]})
    assert bound
    assert reason.startswith(
        "11 of 1000 sends (1.1%) started more than 10 ms late with a user idle"
    )


def test_sends_waiting_for_a_user_say_how_many_users_there_were() -> None:
    bound, reason = verdict([process("local", late_waited=100, users=1)], {"local": [0.1]})
    assert bound
    assert "100 of 1000 sends (10.0%)" in reason and "one of the 1 users" in reason
    assert "median service time 2.0 ms" in reason


def test_unsent_attempts_are_reported() -> None:
    bound, reason = verdict([process("local", unsent=3)], {"local": [0.1]})
    assert bound and reason == "3 attempts were never sent before the run ended"


def test_per_second_rates_from_the_rows() -> None:
    workload = Workload(rate=3.0, profile=[{"at": 1.0, "rate": 1.0}])
    started = 100.0
    nan = math.nan
    rows = pd.DataFrame({
        "attempt":     [1,     1,     2,     1,     1],
        "intended_at": [100.1, 100.9, 101.2, 101.5, 102.5],
        "sent_at":     [100.1, 101.1, 101.2, 101.5, nan],
        "done_at":     [100.2, 101.3, 101.4, 103.5, nan],
        "status":      [202,   202,   202,   0,     0],
    })  # fmt: skip
    rates = per_second_rates(rows, workload, 3.0, started)
    assert rates.to_dict("list") == {
        "second": [0, 1, 2],
        "target": [3.0, 1.0, 1.0],
        "scheduled": [2, 1, 1],
        "achieved": [1, 2, 0],
        "sent": [1, 3, 0],
        "answered": [1, 2, 0],
    }


def test_the_verdict_rates_count_the_arrival_window_only() -> None:
    # 3 s at a 100/s target; the generator sent 90, 60, 30 and its backlog after the window.
    rows = [[0, 100.0, 95, 90, 90, 90], [1, 100.0, 104, 60, 60, 60], [2, 100.0, 99, 30, 30, 30],
            [3, 0.0, 0, 120, 120, 120]]  # fmt: skip
    rates = pd.DataFrame(rows, columns=RATE_COLUMNS)
    assert mean_rates(rates, 3.0) == (60.0, 100.0)
    assert mean_rates(rates.iloc[:0], 3.0) == (0.0, 0.0)
