"""The processes' stage timings: rows survive a key with commas, and a recorder that cannot
write turns itself off instead of failing the request that recorded."""

from __future__ import annotations

from pathlib import Path

from reference_impl.timings import Timings, collect


def test_rows_are_read_back_in_time_order_with_commas_in_a_key(tmp_path: Path) -> None:
    timed = Timings(str(tmp_path))
    timed.held(0.004)
    timed.commit(3, 0.002)
    timed.request("tenant-1/a,b", 0.010, 0.002)
    timed.step("payments", 5, 1, 0.003, 0.002, 0.001)
    timed.flush()
    rows = collect(tmp_path)
    assert list(rows["kind"]) == ["commit", "request", "step"]
    commit, request, step = rows.itertuples()
    assert (commit.seconds, commit.commit, commit.items) == (0.004, 0.002, 3)  # the lock's hold
    assert request.key == "tenant-1/a,b"
    assert (step.stage, step.items, step.skipped, step.cpu) == ("payments", 5, 1, 0.001)


def test_a_recorder_that_cannot_write_turns_off_without_raising(tmp_path: Path) -> None:
    timed = Timings(str(tmp_path / "missing"))
    timed.request("tenant-1/k", 0.01, 0.002)
    timed.flush()  # the directory does not exist: logged, not raised
    assert not timed.enabled
    timed.request("tenant-1/k2", 0.01, 0.002)  # and from then on, nothing is kept
    assert not (tmp_path / "missing").exists()


def test_without_a_directory_nothing_is_recorded(tmp_path: Path) -> None:
    timed = Timings(None)
    timed.request("tenant-1/k", 0.01, 0.002)
    timed.flush()
    assert not timed.enabled and list(tmp_path.iterdir()) == []
