"""Fixtures of the unit tests: a ledger with a few funded accounts."""

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
