"""The dependency rule of DESIGN.md section 3, enforced on the source.

`core` imports only the standard library and `core`; `service` imports only the standard library,
`core` and `service`. Neither imports simpy, fastapi, sqlalchemy, psycopg, redis, locust, nor the
standard library's clock and randomness (`time`, `random`, `uuid`): those are passed in.
"""

from __future__ import annotations

import ast
import shutil
import sys
import textwrap
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


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[ast.AST, str]]:
    """(statement, dotted name) of every import in `tree`, relative ones resolved to absolute.

    `from a.b import c` yields `a.b.c`, so `from reference_impl import adapters` is caught;
    `importlib.import_module("x")` and `__import__("x")` count as imports of `x`.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
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
            why = "forbidden in core and service (DESIGN.md section 3)"
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
        ": `import uuid` imports uuid: forbidden in core and service (DESIGN.md section 3)"
    )
    assert messages[1] == (
        "reference_impl.service.ports, line 1: `import sqlalchemy` imports sqlalchemy: "
        "forbidden in core and service (DESIGN.md section 3)"
    )
