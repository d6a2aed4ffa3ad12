"""`reports` depends on nothing but the run record, enforced on the source.

The reports, the audit and the gates must read a run the same way whichever runtime wrote it, so
no module of `reports` may import the reference implementation, a runtime or the command line.
It may use the SLO grammar and the unit parser (`scenarios.slo`, `scenarios.units`), since a
scenario's gates and durations are part of the record's scenario.yaml. Checked twice: every
import statement in the source, lazy ones included, and what importing every module loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import reports

ROOT = Path(reports.__file__).parent
FORBIDDEN = ("reference_impl", "sim", "testbed", "loadtest", "scenarios")
ALLOWED = ("scenarios.slo", "scenarios.units")
MODULES = sorted(p for p in ROOT.glob("*.py") if p.name != "__init__.py")


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in FORBIDDEN and not name.startswith(ALLOWED):
                found.append(f"line {node.lineno}: imports {name}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_reports_module_imports_no_runtime(path: Path):
    assert violations(path.read_text(encoding="utf-8")) == []


def test_the_checker_catches_lazy_and_aliased_imports():
    source = "def f():\n    from sim.run import simulate\nimport reference_impl.core as c\n"
    assert sorted(violations(source)) == [
        "line 2: imports sim.run.simulate",
        "line 3: imports reference_impl.core",
    ]
    assert violations("from scenarios.schema import Scenario") != []
    assert violations("from scenarios.slo import parse_slo\nimport simpy_like") == []


def test_importing_every_reports_module_loads_no_runtime():
    names = [f"reports.{p.stem}" for p in MODULES]
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(names) >= 8
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN and not m.startswith(ALLOWED)]
    assert bad in ([], ["scenarios"]), bad
