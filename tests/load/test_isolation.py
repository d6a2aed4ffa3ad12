"""Locust monkey-patches the interpreter that imports it: only generator processes may."""

from __future__ import annotations

import subprocess
import sys


def test_the_entry_point_and_the_cli_import_neither_locust_nor_gevent() -> None:
    code = (
        "import sys, loadtest.traffic, loadtest.bench, loadtest.setup_accounts, testbed.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
