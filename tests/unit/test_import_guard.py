"""The dependency rules of the README's layout, enforced on the source.

`core` imports only the standard library and `core`; `service` imports only the standard library,
`core` and `service`. Neither imports simpy, fastapi, sqlalchemy, psycopg, redis, locust, nor the
standard library's clock and randomness (`time`, `random`, `uuid`): those are passed in.

Between the top-level packages the layering is one-way: the reference implementation imports
none of the testbed around it; `reports` (the audit) reads only the run record, never the code
that wrote it; `sim` and `loadtest` never import the command line (`testbed`). Within `testbed`
and `reports`, no two modules import each other, directly or in a loop, even lazily inside a
function (imports under `if TYPE_CHECKING:` never run and do not count for loops).
"""

from __future__ import annotations

import ast
import shutil
import sys
import textwrap
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import reference_impl

PACKAGE_ROOT = Path(reference_impl.__file__).parent
FORBIDDEN = frozenset(
    {"simpy", "fastapi", "sqlalchemy", "psycopg", "redis", "locust", "time", "random", "uuid"}
)
ALLOWED_PACKAGES = {
    "core": ("reference_impl.core",),
    "service": ("reference_impl.core", "reference_impl.service"),
}


def imported_names(
    tree: ast.AST, module: str, is_package: bool, runtime_only: bool = False
) -> list[tuple[ast.AST, str]]:
    """(statement, dotted name) of every import in `tree`, relative ones resolved to absolute.

    `from a.b import c` yields `a.b.c`, so `from reference_impl import adapters` is caught;
    `importlib.import_module("x")` and `__import__("x")` count as imports of `x`. With
    `runtime_only`, imports in the body of an `if TYPE_CHECKING:` are left out.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[ast.AST, str]] = []
    for node in _walk(tree, runtime_only):
        if isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            if base == "__future__":
                continue
            found += [
                (node, base if alias.name == "*" else f"{base}.{alias.name}")
                for alias in node.names
            ]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            arg = node.args[0] if node.args else None
            name = arg.value if isinstance(arg, ast.Constant) else "<dynamic import>"
            found.append((node, str(name)))
    return found


def _walk(tree: ast.AST, runtime_only: bool) -> Iterator[ast.AST]:
    """ast.walk, breadth first, optionally skipping what only type checkers read."""
    todo = deque([tree])
    while todo:
        node = todo.popleft()
        yield node
        if runtime_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return name == "TYPE_CHECKING"


def _is_dynamic_import(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("__import__", "import_module")


def import_violations(source: str, module: str, layer: str, is_package: bool = False) -> list[str]:
    """A message per import of `source` (the module `module` of `layer`) that breaks the rule."""
    allowed = ALLOWED_PACKAGES[layer]
    messages = []
    for node, name in imported_names(ast.parse(source), module, is_package):
        top = name.split(".")[0]
        own = any(name == p or name.startswith(p + ".") for p in allowed)
        if top in FORBIDDEN:
            why = "forbidden in core and service (clock, ids and randomness are passed in)"
        elif own or top in sys.stdlib_module_names:
            continue
        elif top == "reference_impl":
            why = f"{layer} may import only {', '.join(allowed)}"
        else:
            why = "not the standard library"
        line = getattr(node, "lineno", 0)
        messages.append(f"{module}, line {line}: `{ast.unparse(node)}` imports {name}: {why}")
    return messages


def layer_modules(root: Path, layer: str) -> list[tuple[str, Path]]:
    """(dotted module name, path) of every module of `reference_impl/<layer>` under `root`."""
    modules = []
    for path in sorted((root / layer).rglob("*.py")):
        parts = ("reference_impl", *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.append((".".join(parts), path))
    return modules


def scan(root: Path) -> list[str]:
    messages = []
    for layer in ALLOWED_PACKAGES:
        for module, path in layer_modules(root, layer):
            source = path.read_text(encoding="utf-8")
            messages += import_violations(source, module, layer, path.name == "__init__.py")
    return messages


LAYER_MODULES = [
    (layer, m, p) for layer in ALLOWED_PACKAGES for m, p in layer_modules(PACKAGE_ROOT, layer)
]


@pytest.mark.parametrize(
    ("layer", "module", "path"), LAYER_MODULES, ids=[m for _, m, _ in LAYER_MODULES]
)
def test_module_imports_only_what_its_layer_may(layer: str, module: str, path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    violations = import_violations(source, module, layer, path.name == "__init__.py")
    assert not violations, "\n".join(violations)


def test_the_guard_sees_the_modules_it_guards() -> None:
    modules = {m for _, m, _ in LAYER_MODULES}
    expected = {
        "reference_impl.core",
        "reference_impl.core.money",
        "reference_impl.core.ledger",
        "reference_impl.core.journal",
        "reference_impl.core.errors",
        "reference_impl.service",
        "reference_impl.service.ports",
        "reference_impl.service.ledger",
    }
    assert expected <= modules


# -- the checker itself can fail ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("import time", "time"),
        ("from time import monotonic", "time.monotonic"),
        ("import random as rnd", "random"),
        ("from uuid import uuid4", "uuid.uuid4"),
        ("import simpy", "simpy"),
        ("from fastapi import FastAPI", "fastapi.FastAPI"),
        ("import sqlalchemy.orm", "sqlalchemy.orm"),
        ("from psycopg import sql", "psycopg.sql"),
        ("import redis.asyncio", "redis.asyncio"),
        ("import locust", "locust"),
        ("import numpy", "numpy"),
        ("import json, pydantic", "pydantic"),
        (
            "from reference_impl.adapters.memory import Store",
            "reference_impl.adapters.memory.Store",
        ),
        ("from reference_impl import adapters", "reference_impl.adapters"),
        ("from reference_impl.service.ports import Store", "reference_impl.service.ports.Store"),
        ("from ..service import ports", "reference_impl.service.ports"),
        ("from .. import api", "reference_impl.api"),
        ("import importlib\nimportlib.import_module('time')", "time"),
        ("__import__('random')", "random"),
        ("from importlib import import_module\nimport_module(name)", "<dynamic import>"),
        ("def later():\n    import time\n    return time.time()", "time"),
        ("try:\n    import simpy\nexcept ImportError:\n    simpy = None", "simpy"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fastapi", "fastapi"),
    ],
)
def test_checker_names_module_and_import(source: str, name: str) -> None:
    [message] = import_violations(source, "reference_impl.core.ledger", "core")
    assert message.startswith("reference_impl.core.ledger, line ")
    assert f"` imports {name}: " in message


def test_service_may_import_core_but_core_may_not_import_service() -> None:
    source = "from reference_impl.service.ports import Store\nfrom ..core import money\n"
    assert import_violations(source, "reference_impl.service.ledger", "service") == []
    [message] = import_violations(source, "reference_impl.core.ledger", "core")
    assert message == (
        "reference_impl.core.ledger, line 1: `from reference_impl.service.ports import Store` "
        "imports reference_impl.service.ports.Store: core may import only reference_impl.core"
    )


def test_service_may_not_import_adapters() -> None:
    source = "from reference_impl.adapters.memory import MemoryStore"
    [message] = import_violations(source, "reference_impl.service.ledger", "service")
    assert "service may import only reference_impl.core, reference_impl.service" in message


def test_checker_allows_stdlib_and_own_layer() -> None:
    source = textwrap.dedent(
        """
        from __future__ import annotations
        import hashlib, json
        from decimal import Decimal
        from collections.abc import Mapping
        from . import money
        from .journal import JournalHead
        from reference_impl.core.errors import InvalidInput
        import reference_impl.core.ledger
        """
    )
    assert import_violations(source, "reference_impl.core.ledger", "core") == []


def test_relative_imports_resolve_from_a_package_init() -> None:
    assert import_violations("from . import ledger", "reference_impl.core", "core", True) == []
    [message] = import_violations("from .. import adapters", "reference_impl.core", "core", True)
    assert "imports reference_impl.adapters" in message


def test_scan_fails_on_a_copy_with_a_forbidden_import(tmp_path: Path) -> None:
    root = tmp_path / "reference_impl"
    for layer in ALLOWED_PACKAGES:
        shutil.copytree(PACKAGE_ROOT / layer, root / layer)
    assert scan(root) == []
    ledger = root / "core" / "ledger.py"
    ledger.write_text(ledger.read_text() + "\nimport uuid\n", encoding="utf-8")
    ports = root / "service" / "ports.py"
    ports.write_text("import sqlalchemy\n" + ports.read_text(), encoding="utf-8")
    messages = scan(root)
    assert len(messages) == 2
    assert messages[0].startswith("reference_impl.core.ledger, line ")
    assert messages[0].endswith(
        ": `import uuid` imports uuid: forbidden in core and service (clock, ids and randomness "
        "are passed in)"
    )
    assert messages[1] == (
        "reference_impl.service.ports, line 1: `import sqlalchemy` imports sqlalchemy: "
        "forbidden in core and service (clock, ids and randomness are passed in)"
    )


# -- one-way layering between the top-level packages -------------------------------------------

SOURCE_ROOT = PACKAGE_ROOT.parent
FIRST_PARTY = ("reference_impl", "scenarios", "sim", "loadtest", "reports", "testbed")
MAY_NOT_IMPORT: Mapping[str, tuple[str, ...]] = {
    "reference_impl": ("scenarios", "sim", "loadtest", "reports", "testbed"),
    "scenarios": ("sim", "loadtest", "reports", "testbed"),
    "reports": ("reference_impl", "sim", "loadtest", "testbed"),
    "sim": ("loadtest", "testbed"),
    "loadtest": ("testbed",),
}
"""What each package must never import; `testbed`, the command line, may import them all."""
NO_CYCLES = ("reports", "testbed")


def package_modules(root: Path, package: str) -> list[tuple[str, Path]]:
    """(dotted module name, path) of every module of the top-level `package` under `root`."""
    modules = []
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return modules


def layering_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    forbidden = MAY_NOT_IMPORT.get(module.split(".")[0], ())
    messages = []
    for node, name in imported_names(ast.parse(source), module, is_package):
        if name.split(".")[0] in forbidden:
            line = getattr(node, "lineno", 0)
            messages.append(
                f"{module}, line {line}: `{ast.unparse(node)}` imports {name}: "
                f"{module.split('.')[0]} may not import {', '.join(forbidden)}"
            )
    return messages


PACKAGE_MODULES = [
    (m, p)
    for package in FIRST_PARTY
    if (SOURCE_ROOT / package).is_dir()
    for m, p in package_modules(SOURCE_ROOT, package)
]


@pytest.mark.parametrize(("module", "path"), PACKAGE_MODULES, ids=[m for m, _ in PACKAGE_MODULES])
def test_packages_import_only_downward(module: str, path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    violations = layering_violations(source, module, path.name == "__init__.py")
    assert not violations, "\n".join(violations)


def import_graph(modules: list[tuple[str, Path]]) -> dict[str, set[str]]:
    """module -> the modules of `modules` it imports when it runs (TYPE_CHECKING aside)."""
    known = {m for m, _ in modules}
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for _, name in imported_names(tree, module, path.name == "__init__.py", True):
            while name and name not in known:  # `from a.b import c`: c may be a name in a.b
                name = name.rpartition(".")[0]
            if name and name != module:
                graph[module].add(name)
    return graph


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every loop of imports, as the sorted modules of each strongly connected component."""
    reaches = {m: _reachable(graph, m) for m in graph}
    loops = {
        tuple(sorted(m for m in reaches[a] if a in reaches[m])) for a in graph if a in reaches[a]
    }
    return sorted(list(loop) for loop in loops)


def _reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


@pytest.mark.parametrize("package", NO_CYCLES)
def test_no_two_modules_of_the_package_import_each_other(package: str) -> None:
    graph = import_graph(package_modules(SOURCE_ROOT, package))
    assert import_cycles(graph) == []


# -- the layering checks themselves can fail -----------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source", "name"),
    [
        ("reports.audit", "from reference_impl.core.journal import JournalEntry", "reference_impl"),
        ("reports.audit", "def f():\n    from sim import export", "sim"),
        ("sim.bench", "from testbed.judge import judge_seed", "testbed"),
        ("reference_impl.runtime", "import scenarios.schema", "scenarios"),
        ("loadtest.users", "from testbed import run", "testbed"),
    ],
)
def test_layering_checker_names_the_upward_import(module: str, source: str, name: str) -> None:
    [message] = layering_violations(source, module)
    assert message.startswith(f"{module}, line ")
    assert f"` imports {name}" in message


def test_layering_checker_allows_downward_imports() -> None:
    assert layering_violations("from reports.audit import audit", "testbed.run") == []
    assert layering_violations("from scenarios.schema import Scenario", "sim.run") == []
    assert layering_violations("from reference_impl.bugs import BUGS", "scenarios.schema") == []


def test_cycle_finder_sees_a_lazy_loop_but_not_a_type_checking_one(tmp_path: Path) -> None:
    package = tmp_path / "testbed"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from testbed.b import x\n")
    (package / "b.py").write_text("def f():\n    from testbed.a import y\nx = 1\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from testbed.a import y\n"
        "from testbed import b\n"
    )
    graph = import_graph(package_modules(tmp_path, "testbed"))
    assert graph["testbed.c"] == {"testbed.b"}
    assert import_cycles(graph) == [["testbed.a", "testbed.b"]]
