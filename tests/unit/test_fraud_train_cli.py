"""`testbed fraud train` end to end on a small scenario, and its bad flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reference_impl.adapters.fraud_model import META_FILE, FraudModel
from reference_impl.core.fraud import FEATURES, AccountProfile, features
from scenarios.loader import HERE
from testbed.cli import app
from testbed.commands import register

register(app)
FRAUD_MIX = HERE / "catalog" / "fraud-mix.yaml"
QUICKSTART = HERE / "quickstart.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fraud-mix with fewer accounts, a lower rate and incidents twice as often."""
    data = yaml.safe_load(FRAUD_MIX.read_text())
    data["workload"]["accounts"] = 60
    data["workload"]["rate"] = "40/s"
    for spec in data["workload"]["fraud"].values():
        if isinstance(spec, dict):
            spec["rate"] = "24/min"
    path = tmp_path_factory.mktemp("scenario") / "small-fraud.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def train(*args: str):
    return CliRunner().invoke(app, ["fraud", "train", *args])


def test_train_writes_a_model_the_consumer_loads(small: Path, tmp_path: Path):
    done = train("-o", str(tmp_path / "m"), "--scenario", str(small), "--duration", "90s",
                 "--seed", "5", "--recall", "0.7")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "generated " in done.output and "over 90s of small-fraud (seed 5)" in done.output
    for row in ("training part", "model", "rules", "card_testing", "structuring"):
        assert row in done.output
    assert "scoring one payment (one thread, this machine): median " in done.output
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    training = meta["training"]
    assert (training["seed"], training["duration"], training["recall_target"]) == (5, 90.0, 0.7)
    assert training["scenario"] == str(small)
    assert training["excluded_patterns"] == ["sanctioned_payee"]
    assert training["validation"]["recall"] >= 0.7
    assert 0 < training["positives"] < training["rows"]
    model = FraudModel.load(tmp_path / "m")
    assert model.threshold == meta["threshold"]
    decision = model.decide(features(AccountProfile(), 0.0, "acc-000001", 2500))
    assert decision.verdict in ("approve", "review")
    assert list(FEATURES) == meta["features"]


def test_the_same_seed_trains_the_same_model(small: Path, tmp_path: Path):
    for name in ("a", "b"):
        done = train("-o", str(tmp_path / name), "--scenario", str(small), "--payments", "2500")
        assert done.exit_code == 0, done.output
    a, b = (json.loads((tmp_path / n / META_FILE).read_text()) for n in ("a", "b"))
    del a["training"]["score_seconds"], b["training"]["score_seconds"]
    assert a == b


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payments", "1000", "--duration", "1min"], "--payments, --duration: give one"),
        (["--duration", "ten minutes"], "--duration: must be a duration like"),
        (["--duration", "0s"], "--duration: must be longer than 0s"),
        (["--scenario", str(QUICKSTART)], "workload.fraud: missing"),
        (["--scenario", "nope.yaml"], "--scenario: nope.yaml: no such file"),
    ],
)
def test_a_bad_flag_is_named(tmp_path: Path, args: list[str], message: str):
    done = train("-o", str(tmp_path / "m"), *args)
    assert done.exit_code == 2
    assert message in done.output
    assert not (tmp_path / "m").exists()


def test_a_recall_out_of_range_is_named(tmp_path: Path):
    done = train("-o", str(tmp_path / "m"), "--recall", "1.5")
    assert done.exit_code == 2
    assert "--recall" in done.output


def test_out_must_not_be_a_file(tmp_path: Path):
    (tmp_path / "m").write_text("")
    done = train("-o", str(tmp_path / "m"))
    assert done.exit_code == 2
    assert f"--out: {tmp_path / 'm'} is a file" in done.output


def test_too_little_fraud_to_train_says_what_to_change(small: Path, tmp_path: Path):
    data = yaml.safe_load(small.read_text())
    for spec in data["workload"]["fraud"].values():
        if isinstance(spec, dict):
            spec["rate"] = "1/h"
    rare = tmp_path / "rare.yaml"
    rare.write_text(yaml.safe_dump(data))
    done = train("-o", str(tmp_path / "m"), "--scenario", str(rare), "--duration", "30s")
    assert done.exit_code == 2
    assert "has 0 fraud payments: it needs both fraud and legitimate ones" in done.output
    assert not (tmp_path / "m").exists()
