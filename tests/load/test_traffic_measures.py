"""What run_traffic measures, against a stand-in endpoint: retries, failures, coordinated
omission, master/worker merging, and bad arguments."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from traffic_harness import check_rows, scenario

from loadtest.errors import TrafficError
from loadtest.traffic import run_traffic
from reference_impl.runtime.launcher import free_port

KEYS = {"tenant-1": "k"}


@pytest.mark.timeout(120)
def test_first_try_failures_are_retried_with_the_same_key_after_a_backoff(
    fake_server: Callable[..., str], tmp_path: Path
) -> None:
    url = fake_server("--fail-first-every", "4")
    sc = scenario(2.0, rate="50/s", client={"retries": 2, "backoff": "100ms", "jitter": 0.5})
    result = run_traffic(sc, url, KEYS, t0=time.time(), seed=3, out_dir=tmp_path, setup=False)
    rows = check_rows(result)
    unlucky = {k for k in rows["key"] if zlib.crc32(k.encode()) % 4 == 0}
    assert 0 < len(unlucky) < rows["key"].nunique()
    first = rows[rows["attempt"] == 1].set_index("key")
    second = rows[rows["attempt"] == 2].set_index("key")
    assert set(first.index[first["status"] == 503]) == unlucky
    assert set(second.index) == unlucky and (second["status"] == 202).all()
    assert (rows["attempt"] <= 2).all()
    assert (first.loc[list(unlucky), "outcome"] == "error").all()
    # The retry is due `backoff` after the answer, half of it drawn at random (jitter 0.5).
    waited = second["intended_at"] - first.loc[second.index, "done_at"]
    assert waited.between(0.05 - 1e-9, 0.1 + 1e-9).all(), waited.describe()


@pytest.mark.timeout(120)
def test_an_unreachable_system_gives_one_error_row_per_attempt(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sc = scenario(1.0, rate="20/s", client={"retries": 1, "backoff": "10ms"})
    result = run_traffic(sc, url, KEYS, t0=time.time(), seed=1, out_dir=tmp_path, setup=False)
    rows = check_rows(result)
    assert set(rows["outcome"]) == {"error"} and (rows["status"] == 0).all()
    assert (rows.groupby("key")["attempt"].max() == 2).all()
    assert result.locust.failures == len(rows)


@pytest.mark.timeout(120)
def test_a_stall_shows_in_latency_from_the_intended_time_and_not_from_the_send(
    fake_server: Callable[..., str], tmp_path: Path
) -> None:
    """Coordinated omission: one user, 100 payments a second, and the server stalls for 1 s.

    The user waits on the stalled request, so the ~100 payments due meanwhile go out late, all
    at once, and are answered fast. Timed from their actual send (a closed loop, and Locust's
    own statistics) they look fine; timed from when they were due, they waited up to 1 s."""
    stall = 1.0
    url = fake_server("--stall-after", "300", "--stall", str(stall))
    sc = scenario(8.0, rate="100/s", client={"timeout": "5s", "retries": 0})
    result = run_traffic(
        sc, url, KEYS, t0=time.time(), seed=2, out_dir=tmp_path, setup=False, users=1
    )
    rows = check_rows(result)
    assert (rows["status"] == 202).all() and len(rows) > 600
    # From the intended send time: the stall is in the 99th percentile, as it was.
    assert result.latency.p99 >= 0.8 * stall
    assert result.latency.max >= 0.95 * stall
    # From the actual send: one slow answer among hundreds hides below the 99th percentile
    # (a generous bound: a loaded machine slows the fake server's answers, not the stall).
    assert result.service.max >= 0.95 * stall
    assert result.service.p99 < 0.5 * stall
    assert result.locust.p99 < 0.5 * stall
    # The late sends are counted, and the verdict says the one user was the limit.
    delayed = int((rows["sent_at"] - rows["intended_at"] > result.late_after).sum())
    assert delayed >= 0.8 * stall * 100
    assert result.missed_sends == delayed
    assert result.generator_bound and "one of the 1 users" in result.generator_reason


@pytest.mark.timeout(180)
def test_two_locust_workers_share_the_schedule_and_merge_exactly(
    fake_server: Callable[..., str], tmp_path: Path
) -> None:
    url = fake_server()
    sc = scenario(3.0, rate="80/s", client={"duplicate_probability": 0.05})
    result = run_traffic(
        sc, url, KEYS, t0=time.time(), seed=5, out_dir=tmp_path, setup=False, locust_workers=2
    )
    rows = check_rows(result)
    assert result.processes == 2
    # The merged histogram holds every row of both workers, once.
    assert result.latency.count == len(rows) > 150
    by_worker = rows["key"].str.extract(r"-(w\d)-k\d+$")[0].value_counts()
    assert set(by_worker.index) == {"w0", "w1"}
    assert set(result.samples["process"]) == {"worker-0", "worker-1"}
    # By default each worker has users for its share of the rate held for a whole timeout.
    assert result.users == 2 * 40 * 2
    assert (tmp_path / "traffic" / "worker-1.log").exists()


@pytest.mark.timeout(180)
def test_a_worker_started_by_hand_joins_the_run_as_on_another_machine(
    fake_server: Callable[..., str], tmp_path: Path
) -> None:
    url = fake_server()
    port = free_port()
    # docs/load.md's command for another machine; here the master is on the loopback.
    worker = subprocess.Popen(
        [sys.executable, "-m", "loadtest.generator", "worker", "--master-host", "127.0.0.1",
         "--master-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        result = run_traffic(
            scenario(2.0, rate="40/s"), url, KEYS, t0=time.time(), seed=4, out_dir=tmp_path,
            setup=False, locust_workers=1, remote_workers=1, master_address=("127.0.0.1", port),
        )  # fmt: skip
        rows = check_rows(result)
        assert result.processes == 2 and result.latency.count == len(rows)
        assert set(result.samples["process"]) == {"worker-0", "worker-1"}
        assert worker.wait(60) == 0  # the master told it the run is over
    finally:
        worker.kill()
        worker.wait()


@pytest.mark.timeout(120)
def test_a_generator_that_cannot_start_raises_traffic_error_naming_why(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TrafficError, match=r"exited 1: .*Address already in use"):
            run_traffic(
                scenario(1.0, rate="1/s"), "http://127.0.0.1:9", KEYS, t0=time.time(), seed=1,
                out_dir=tmp_path, setup=False, remote_workers=1,
                master_address=("127.0.0.1", port),
            )  # fmt: skip
    assert (tmp_path / "traffic" / "generator.log").read_text()


def test_bad_arguments_are_one_line_naming_the_argument(tmp_path: Path) -> None:
    sc = scenario(1.0, tenants=2, rate="1/s")
    cases = [
        (dict(api_keys={"tenant-1": "a"}), "api_keys: no key for tenant 'tenant-2'"),
        (
            dict(api_keys={"tenant-1": "a", "tenant-2": "b\r\nX: y"}),
            "api_keys: the key of 'tenant-2' must be printable ASCII, no spaces",
        ),
        (dict(base_url="ftp://x"), "base_url: must be an http:// or https:// URL"),
        (dict(duration=0.0), "duration: must be > 0 seconds"),
        (dict(locust_workers=-1), "locust_workers, remote_workers: must be >= 0"),
        (dict(users=1, locust_workers=2), "users: must be at least 1 per generator process"),
    ]
    for change, message in cases:
        args = {"api_keys": {"tenant-1": "a", "tenant-2": "b"}, "base_url": "http://127.0.0.1:9",
                **change}  # fmt: skip
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            run_traffic(sc, t0=0.0, seed=1, out_dir=tmp_path, setup=False, **args)  # type: ignore[arg-type]
    assert not (tmp_path / "traffic").exists()  # refused before anything started
