"""The data boundary, read from the source: ``app/db`` does not name the API's arguments, and the
layers above it build no database filter and name no stored key (issue 14, item 3).

Before, ``app/db`` raised errors naming GraphQL arguments (``field="userId"``,
``memories[i].uuid``), and ``app/schema`` built ``order_key`` ranges and named the key fields
of its connections (``order_key``, ``seq``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from memvault import errors
from memvault.schema import schema

APP = Path(__file__).resolve().parents[2] / "app"
ERRORS = {name for name, value in vars(errors).items() if isinstance(value, type)}
# What the data layer keeps to itself: stored fields no reader of a document needs, and the
# forms of a MongoDB filter (an operator, a dotted path into metadata).
STORED_ONLY = {"order_key", "seq_key", "deleted_ms", "deletion_id", "next_seq", "version"}
FILTER = re.compile(r"^\$[a-zA-Z]+$|^metadata\.")
# Protocol keys above the data layer that share a stored key's name: APQ's
# ``extensions.persistedQuery.version``
PROTOCOL_KEYS = {"http/persisted.py: 'version'"}


def strings(path: Path) -> list[str]:
    """The string constants of a module, the literal parts of f-strings included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def api_names() -> set[str]:
    """The schema's field and argument names that are not also stored names (camelCase)."""
    names: set[str] = set()
    for type_name, graphql_type in schema._schema.type_map.items():
        if type_name.startswith("__"):
            continue
        for name, field in (getattr(graphql_type, "fields", None) or {}).items():
            names.add(name)
            names.update(getattr(field, "args", None) or {})
    return {name for name in names if name != name.lower()}


def test_the_data_layer_names_no_argument() -> None:
    camel = api_names()
    assert {"userId", "sessionId", "roleType"} <= camel
    word = re.compile(r"\b(" + "|".join(sorted(camel)) + r")\b|memories\[")
    found = {
        f"{path.name}: {value!r}"
        for path in sorted((APP / "db").glob("*.py"))
        for value in strings(path)
        if word.search(value)
    }
    assert found == set()


def test_the_data_layer_raises_errors_with_subjects() -> None:
    """An error raised in ``app/db`` says what it is about (``subject=``), never ``field=``."""
    with_field = {
        f"{path.name}:{node.lineno}"
        for path in sorted((APP / "db").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ERRORS
        and any(keyword.arg == "field" for keyword in node.keywords)
    }
    assert with_field == set()


def test_the_layers_above_build_no_filter_and_name_no_stored_key() -> None:
    """(``memvault bench`` aside: its floor is the same reads sent with the bare driver.)"""
    layers = [
        path
        for path in sorted(APP.rglob("*.py"))
        if path.parent.name != "db" and path.name != "bench.py"
    ]
    assert APP / "schema" / "query.py" in layers
    found = {
        f"{path.relative_to(APP)}: {value!r}"
        for path in layers
        for value in strings(path)
        if value in STORED_ONLY or FILTER.search(value)
    }
    assert found - PROTOCOL_KEYS == set()
