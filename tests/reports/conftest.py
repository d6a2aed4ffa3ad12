"""Fixtures of the report tests: headless Chromium for the render tests.

Like PostgreSQL and Redis (tests/conftest.py), a missing Chromium skips the tests that need it,
unless TESTBED_REQUIRE_SERVICES=1 (CI, whose .ci/run installs Debian's chromium): then it fails.
"""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def chromium() -> str:
    binary = os.environ.get("TESTBED_CHROMIUM") or shutil.which("chromium")
    if binary is None:
        message = "chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("TESTBED_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{message} (TESTBED_REQUIRE_SERVICES=1: it is required)")
        pytest.skip(message)
    return binary
