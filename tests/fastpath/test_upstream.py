"""``memvault.schema._upstream`` holds every undocumented name of Strawberry, graphql-core and
cross_web memvault uses: each still exists with the kind we use it as (an upgrade that moves or
changes one fails here, by name), and no other module in ``app/`` reaches past their public API."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path
from typing import Any

import graphql
import pytest
import strawberry
import strawberry.extensions
import strawberry.types
from graphql import ASTValidationRule, GraphQLResolveInfo, GraphQLSchema, parse
from strawberry.asgi import GraphQL

from memvault.schema import _upstream as upstream
from memvault.schema import schema
from memvault.schema.types import SCALARS

APP = Path(__file__).resolve().parents[2] / "app"
SHIM = APP / "schema" / "_upstream.py"


def _is_class(*bases: type) -> Any:
    return lambda value: inspect.isclass(value) and issubclass(value, bases)


def _alias_of(origin: Any) -> Any:
    return lambda value: typing.get_origin(value) in {origin}


def _rule_factory(value: Any) -> bool:
    made = value(3) if value is upstream.max_aliases_rule else value(3, None)
    return inspect.isclass(made) and issubclass(made, ASTValidationRule)


def _validates(value: Any) -> bool:
    errors = value(
        upstream.graphql_schema(schema), parse("{ nope }"), tuple(graphql.specified_rules)
    )
    return isinstance(errors, list) and bool(errors) and isinstance(errors[0], graphql.GraphQLError)


def _operation_type(value: Any) -> bool:
    return value(parse("mutation { __typename }"), None) is upstream.OperationType.MUTATION


def _backref(value: Any) -> bool:
    graphql_field = upstream.graphql_schema(schema).type_map["Query"].fields["user"]  # type: ignore[union-attr]
    return isinstance(value, str) and isinstance(
        graphql_field.extensions.get(value), upstream.StrawberryField
    )


def _names_on(owner: type) -> Any:
    return lambda names: all(callable(getattr(owner, name, None)) for name in names)


def _executor_attributes(names: tuple[str, ...]) -> bool:
    built = upstream.StrawberryGraphQLCoreExecutionContext.build(
        upstream.graphql_schema(schema), parse("{ __typename }")
    )
    assert not isinstance(built, list), built
    return all(hasattr(built, name) for name in names) and isinstance(
        built.variable_values.coerced, dict
    )


EXPECTED: dict[str, Any] = {
    "AsyncHTTPRequestAdapter": inspect.isclass,
    "HTTPException": _is_class(Exception),
    "FieldDetailsList": _alias_of(list),
    "GroupedFieldSet": _alias_of(dict),
    "AwaitableOrValue": lambda value: typing.get_origin(value) is typing.Union,
    "Path": lambda value: inspect.isclass(value) and hasattr(value, "as_list"),
    "optimized_is_awaitable": lambda value: value(None) is False and callable(value),
    "max_aliases_rule": _rule_factory,
    "query_depth_rule": _rule_factory,
    "GraphQLRequestData": inspect.isclass,
    "CannotGetOperationTypeError": _is_class(Exception),
    "InvalidOperationTypeError": _is_class(Exception),
    "StrawberryGraphQLCoreExecutionContext": _is_class(graphql.Executor),
    "validate_document": _validates,
    "DEFINITION_BACKREF": _backref,
    "StrawberryOptional": inspect.isclass,
    "StrawberryField": inspect.isclass,
    "OperationType": lambda value: value.from_http("POST") >= {value.QUERY, value.MUTATION},
    "ScalarDefinition": lambda value: all(isinstance(s, value) for s in SCALARS.values()),
    "get_operation_type": _operation_type,
    "EXECUTOR_METHODS": _names_on(upstream.StrawberryGraphQLCoreExecutionContext),
    "EXECUTOR_ATTRIBUTES": _executor_attributes,
    "VIEW_METHODS": _names_on(GraphQL),
    "SCHEMA_METHODS": _names_on(strawberry.Schema),
    "WS_HANDLER_METHODS": _names_on(upstream.BaseGraphQLTransportWSHandler),
    "BaseGraphQLTransportWSHandler": inspect.isclass,
    "TransportWSOperation": lambda value: (
        inspect.isclass(value)
        and {"send_next", "send_initial_errors", "send_operation_message"} <= set(dir(value))
    ),
    "graphql_schema": lambda value: isinstance(value(schema), GraphQLSchema),
    "raw_info": callable,  # with make_info: test_info_round_trip
    "make_info": callable,
}


def test_the_test_knows_every_promised_name() -> None:
    assert set(upstream.__all__) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_name_exists_with_its_kind(name: str) -> None:
    assert hasattr(upstream, name), f"{name}: gone from Strawberry/graphql-core/cross_web"
    assert EXPECTED[name](getattr(upstream, name)), f"{name}: not what memvault uses it as"


def test_info_round_trip() -> None:
    """``make_info`` builds Strawberry's Info as its resolver wrapper does; ``raw_info`` reads
    graphql-core's resolve info back."""
    query = upstream.graphql_schema(schema).type_map["Query"]
    field = query.fields["user"].extensions[upstream.DEFINITION_BACKREF]  # type: ignore[union-attr]
    raw = typing.cast("GraphQLResolveInfo[Any]", object())
    info = upstream.make_info(strawberry.Info, raw, field)
    assert isinstance(info, strawberry.Info)
    assert upstream.raw_info(info) is raw


# Strawberry modules whose names memvault imports directly: documented API only.
PUBLIC_STRAWBERRY = {
    "strawberry": set(dir(strawberry)),
    "strawberry.asgi": {"GraphQL"},
    "strawberry.types": set(strawberry.types.__all__),
    "strawberry.extensions": set(strawberry.extensions.__all__),
    "strawberry.http": {"GraphQLHTTPResponse"},
    "strawberry.dataloader": {"DataLoader"},
    "strawberry.permission": {"BasePermission", "PermissionExtension"},
    "strawberry.schema.config": {"StrawberryConfig"},
}
PUBLIC_GRAPHQL = set(graphql.__all__)
PRIVATE_ATTRIBUTES_ALLOWED = {"os._exit"}  # the standard library's, documented


def _reaches_past_public_api(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            names = {alias.name for alias in node.names}
            if top == "cross_web":
                found.append(f"{where} imports cross_web")
            elif top == "graphql" and (node.module != "graphql" or names - PUBLIC_GRAPHQL):
                found.append(f"{where} imports {node.module}: {sorted(names - PUBLIC_GRAPHQL)}")
            elif top == "strawberry" and not names <= PUBLIC_STRAWBERRY.get(node.module, set()):
                found.append(f"{where} imports {node.module}: {sorted(names)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in {"strawberry", "graphql", "cross_web"} and (
                    alias.name not in {"strawberry", "graphql"}
                ):
                    found.append(f"{where} imports {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            text = ast.unparse(node)
            if not (isinstance(owner, ast.Name) and owner.id in {"self", "cls"}) and (
                text not in PRIVATE_ATTRIBUTES_ALLOWED
            ):
                found.append(f"{where} reads {text}")
        elif isinstance(node, ast.keyword) and node.arg and _private(node.arg):
            found.append(f"{where} passes {node.arg}=")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_only_the_shim_reaches_past_the_public_api() -> None:
    """Nothing in ``app/`` but ``_upstream.py`` imports an undocumented Strawberry or graphql-core
    module or name, or cross_web, or reads a private attribute of another object."""
    found = [
        f"{path.parent.relative_to(APP.parent)}/{finding}"
        for path in sorted(APP.rglob("*.py"))
        if path != SHIM
        for finding in _reaches_past_public_api(path)
    ]
    assert not found, "\n".join(found)


def test_the_check_catches_what_it_should(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from strawberry.schema.schema import validate_document\n"
        "from graphql.pyutils import Path\n"
        "from cross_web import HTTPException\n"
        "from graphql import parse\n"
        "raw = info._raw_info\n"
        "make(_raw_info=raw)\n"
        "self._mine = 1\n"
    )
    assert [finding.split(" ", 1)[1] for finding in _reaches_past_public_api(sample)] == [
        "imports strawberry.schema.schema: ['validate_document']",
        "imports graphql.pyutils: ['Path']",
        "imports cross_web",
        "reads info._raw_info",
        "passes _raw_info=",
    ]
