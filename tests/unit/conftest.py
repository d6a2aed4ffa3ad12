"""Fixtures of the unit tests: a ledger with a few funded accounts; one OpenMP thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ledger_harness import Ledger


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    led = Ledger()
    led.open("alice", funds=10_000)
    led.open("bob", funds=500)
    led.open("carol", overdraft=True)
    led.open("yen", "JPY", funds=1_000)
    yield led
    led.store.close()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Score and fit on one OpenMP thread, as a consumer should: on a busy machine, waking
    scikit-learn's threads for a single row costs more than the row (docs/compliance.md).
    threadpoolctl limits only the libraries loaded: scikit-learn's OpenMP is loaded first.
    A module uses it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield
