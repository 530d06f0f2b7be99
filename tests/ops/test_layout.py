"""The layers of ``app/`` (README "Architecture"): who may import what, read from the source.

Issue 14, item 5: the ``/graphql`` endpoint, the Strawberry view and ``app/main.py`` imported
each other (through ``Runtime``, kept on ``app.state``), and layers above ``app/db`` imported
PyMongo. The per-process state is now ``app/runtime.py``, the HTTP face ``app/http/``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"

# What may be imported (a module, a package or a distribution), and by which modules only
# (a package stands for its modules). Imports under TYPE_CHECKING and inside functions count.
IMPORTED_ONLY_BY = {
    "memvault.main": ("memvault.cli",),
    "memvault.http": ("memvault.http", "memvault.main", "memvault.cli"),
    "memvault.runtime": ("memvault.runtime", "memvault.http", "memvault.main"),
    "pymongo": ("memvault.db",),
    "bson": ("memvault.db",),
    "strawberry": ("memvault.schema", "memvault.http"),
    "graphql": ("memvault.schema", "memvault.http"),
    "cross_web": ("memvault.schema", "memvault.http"),
    # Metrics are declared in one place; the bench only parses what /metrics serves
    "prometheus_client": ("memvault.metrics", "memvault.bench"),
}
# Each imports alone, in a fresh interpreter (an import cycle would fail one of them).
ENTRY_MODULES = (
    "memvault.main",
    "memvault.runtime",
    "memvault.http.routes",
    "memvault.http.endpoint",
    "memvault.http.view",
    "memvault.http.cors",
    "memvault.http.observe",
    "memvault.http.uvicorn_protocol",
)


def module_name(path: Path) -> str:
    parts = ["memvault", *path.relative_to(APP).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every name an import statement of this file reaches: ``from a.b import c`` gives
    ``a.b`` and ``a.b.c`` (``c`` may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = {module_name(path): imported_names(path) for path in sorted(APP.rglob("*.py"))}


def test_the_source_tree_is_found() -> None:
    assert {"memvault.main", "memvault.runtime", "memvault.http.view", "memvault.db.errors"} <= set(
        MODULES
    )


@pytest.mark.parametrize("target", IMPORTED_ONLY_BY)
def test_imported_only_by_its_layers(target: str) -> None:
    allowed = IMPORTED_ONLY_BY[target]
    offenders = sorted(
        module
        for module, names in MODULES.items()
        if any(within(name, target) for name in names)
        and not any(within(module, owner) for owner in allowed)
    )
    assert offenders == [], f"{target} is imported by {offenders}; only {allowed} may"


def test_entry_modules_import_alone() -> None:
    processes = {
        module: subprocess.Popen(
            [sys.executable, "-c", f"import {module}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for module in ENTRY_MODULES
    }
    failed = {}
    for module, process in processes.items():
        output, _ = process.communicate(timeout=120)
        if process.returncode:
            failed[module] = output[-2000:]
    assert failed == {}
