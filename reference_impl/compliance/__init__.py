"""The compliance checks as a deployment builds them: the watch list and the model loaded from
their files, the rules set from the settings, each wrapped as a check of the service layer
(service/checkers.py). Both runtimes build them here, from the same settings.

Also home to what the checks need beyond the standard library: the sanctions screen (rapidfuzz,
anyascii) and the synthetic names and watch list it ships with.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from reference_impl.adapters.fraud_model import FraudModel
from reference_impl.compliance.provider import RemoteScreen
from reference_impl.compliance.sanctions import SanctionsScreen, load_watchlist
from reference_impl.core.aml import AmlRules
from reference_impl.service.checkers import AmlCheck, FraudCheck, SanctionsCheck
from reference_impl.service.checks import Checker, CheckerSettings


@cache
def _screen(watchlist: str | None, threshold: float, reject_at: float) -> SanctionsScreen:
    """Loading and normalising a list of thousands of names is paid once per process."""
    entries = load_watchlist(Path(watchlist) if watchlist else None)
    return SanctionsScreen(entries, threshold=threshold, reject_at=reject_at)


@cache
def _model(directory: str) -> FraudModel:
    return FraudModel.load(Path(directory))


def build_checkers(settings: CheckerSettings) -> list[Checker]:
    """The checks `settings.run` names, in that order. A watch list or a model that cannot be
    loaded raises its module's error (WatchListError, FraudModelError), naming the file."""
    made: dict[str, Checker] = {}
    for name in settings.run:
        if name == "sanctions":
            s = settings
            if s.sanctions_provider:
                made[name] = SanctionsCheck(RemoteScreen(s.sanctions_provider))
            else:
                screen = _screen(s.watchlist, s.sanctions_threshold, s.sanctions_reject_at)
                made[name] = SanctionsCheck(screen)
        elif name == "aml":
            made[name] = AmlCheck(AmlRules(**settings.aml))  # type: ignore[arg-type]
        elif name == "fraud":
            model = _model(settings.fraud_model) if settings.fraud_model else None
            made[name] = FraudCheck(model)
        else:
            raise ValueError(f"checks: unknown check {name!r} (known: sanctions, aml, fraud)")
    return list(made.values())
