"""The trained fraud model: a scikit-learn classifier over core/fraud.py's features, on disk.

The core stays stdlib-only, so the classifier lives here, behind the core's `FraudScorer`
protocol: the fraud consumer is handed either `FraudRules` or a `FraudModel` and calls `decide`.
A model directory (what `testbed fraud train -o DIR` writes) holds

- `model.joblib`: the fitted `HistGradientBoostingClassifier` (a pickle: load only models you
  trust, as you would run only code you trust);
- `model.json`: the format, the feature list in column order, the decision threshold, the
  feature parameters the model was trained with, and the training metadata (seed, rows,
  positives, validation precision/recall/FPR, scikit-learn version).

`FraudModel.load` refuses a directory it cannot use with a `FraudModelError` whose one-line
message names the file and the problem: nothing is scored with a model whose columns do not mean
what this version's `features` computes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from reference_impl.core.checks import Decision
from reference_impl.core.errors import InvalidInput
from reference_impl.core.fraud import DEFAULT_PARAMS, FEATURES, FeatureParams

MODEL_FILE = "model.joblib"
META_FILE = "model.json"
FORMAT = 1


class FraudModelError(InvalidInput):
    """A model directory cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class FraudModel:
    classifier: Any
    """A fitted scikit-learn classifier over FEATURES, class 1 = fraud."""
    threshold: float
    """Review a payment whose fraud probability is at least this."""
    params: FeatureParams = DEFAULT_PARAMS
    """The feature parameters it was trained with: compute its features with these."""
    training: Mapping[str, Any] = field(default_factory=dict)
    """How the model was trained (model.json's `training`), for reports."""

    def score(self, features: Mapping[str, float]) -> float:
        """The probability that the payment with these features is fraud."""
        row = np.array([[features[name] for name in FEATURES]], dtype=np.float64)
        return float(self.classifier.predict_proba(row)[0, 1])

    def decide(self, features: Mapping[str, float]) -> Decision:
        score = self.score(features)
        if score >= self.threshold:
            return Decision("review", "fraud:model", score)
        return Decision("approve", "", score)

    def save(self, directory: Path) -> None:
        """Write the model directory; each file appears whole or not at all."""
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "model": MODEL_FILE,
            "features": list(FEATURES),
            "threshold": self.threshold,
            "feature_params": {
                "tiny_amount": self.params.tiny_amount,
                "reporting_threshold": self.params.reporting_threshold,
                "near_fraction": self.params.near_fraction,
            },
            "training": {**self.training, "sklearn_version": sklearn.__version__},
        }
        model_path, meta_path = directory / MODEL_FILE, directory / META_FILE
        partial_model = model_path.with_name(MODEL_FILE + ".partial")
        partial_meta = meta_path.with_name(META_FILE + ".partial")
        joblib.dump(self.classifier, partial_model)
        partial_meta.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        partial_model.replace(model_path)
        partial_meta.replace(meta_path)

    @classmethod
    def load(cls, directory: Path) -> FraudModel:
        if not directory.is_dir():
            raise FraudModelError(f"{directory}: no such model directory")
        meta_path = directory / META_FILE
        meta = _read_meta(meta_path)
        model_path = directory / MODEL_FILE
        if not model_path.is_file():
            raise FraudModelError(f"{model_path}: missing (model.json names it)")
        try:
            classifier = joblib.load(model_path)
        except Exception as e:  # a pickle can fail in any way; all mean "not a usable model"
            raise FraudModelError(f"{model_path}: cannot be loaded: {_one_line(e)}") from None
        width = getattr(classifier, "n_features_in_", None)
        if not hasattr(classifier, "predict_proba") or width != len(FEATURES):
            raise FraudModelError(
                f"{model_path}: not a fitted classifier over the {len(FEATURES)} features of "
                f"{META_FILE} (it takes {width})"
            )
        return cls(classifier, meta["threshold"], meta["feature_params"], meta["training"])


def _read_meta(path: Path) -> dict[str, Any]:
    """model.json, checked: every problem is one line naming the file and the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FraudModelError(f"{path}: missing (write one with `testbed fraud train`)") from None
    except OSError as e:
        raise FraudModelError(f"{path}: cannot read: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FraudModelError(f"{path}: malformed JSON: {_one_line(e)}") from None
    if not isinstance(data, dict):
        raise FraudModelError(f"{path}: must be a JSON object")
    if data.get("format") != FORMAT:
        raise FraudModelError(f"{path}: format: must be {FORMAT}, not {data.get('format')!r}")
    if data.get("model") != MODEL_FILE:
        raise FraudModelError(f"{path}: model: must be {MODEL_FILE!r}, not {data.get('model')!r}")
    features = data.get("features")
    if features != list(FEATURES):
        raise FraudModelError(f"{path}: features: {_feature_difference(features)}; retrain it")
    threshold = data.get("threshold")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 1
    ):
        raise FraudModelError(f"{path}: threshold: must be a number from 0 to 1, not {threshold!r}")
    raw_params = data.get("feature_params")
    if not isinstance(raw_params, dict):
        raise FraudModelError(f"{path}: feature_params: must be a JSON object")
    try:
        params = FeatureParams(**raw_params)
    except TypeError as e:
        raise FraudModelError(f"{path}: feature_params: {_one_line(e)}") from None
    except InvalidInput as e:
        raise FraudModelError(f"{path}: feature_params.{e}") from None
    training = data.get("training")
    if not isinstance(training, dict):
        raise FraudModelError(f"{path}: training: must be a JSON object")
    trained_with = training.get("sklearn_version")
    if trained_with != sklearn.__version__:
        raise FraudModelError(
            f"{path}: training.sklearn_version: trained with scikit-learn {trained_with}, "
            f"installed is {sklearn.__version__} (a pickled model is only safe on the same "
            "version); retrain it"
        )
    return {"threshold": float(threshold), "feature_params": params, "training": training}


def _feature_difference(features: object) -> str:
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        return "must be a list of feature names"
    missing = [f for f in FEATURES if f not in features]
    unknown = [f for f in features if f not in FEATURES]
    if not missing and not unknown:
        return "this version's features, but not in its order"
    parts = [f"missing {', '.join(missing)}"] if missing else []
    parts += [f"unknown {', '.join(unknown)}"] if unknown else []
    return "differ from this version's: " + "; ".join(parts)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
