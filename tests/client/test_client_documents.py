"""Every GraphQL document the client sends lives in ``app/client/documents.py``, validates
against ``schema.graphql``, and the variables the client builds for it are accepted by it."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

from memvault.client import CreateUserRequest, Message, Session, UpdateUserRequest, documents
from memvault.client import operations as ops
from memvault.client.protocol import Call

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "app" / "client"


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema((ROOT / "schema.graphql").read_text())


@pytest.mark.parametrize("name", sorted(documents.OPERATIONS))
def test_document_validates_against_the_schema(schema: GraphQLSchema, name: str) -> None:
    document = parse(documents.OPERATIONS[name])
    assert validate(schema, document) == []
    operation = get_operation_ast(document)
    assert operation is not None
    assert operation.name is not None
    assert operation.name.value == name
    assert sum(isinstance(d, OperationDefinitionNode) for d in document.definitions) == 1


def first_calls() -> list[tuple[str, Generator[Call, dict[str, Any], Any]]]:
    """Every operation of the client, with arguments using every optional field."""
    when = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    message = Message(
        role="Ada",
        role_type="function",
        content="hi",
        metadata={"a": [1, {"b": None}]},
        token_count=2,
        created_at=when,
    )
    return [
        ("create_session", ops.create_session(Session(session_id="s", user_id="u", metadata={}))),
        ("get_session", ops.get_session("s")),
        ("update_session", ops.update_session("s", {"a": None})),
        ("delete_session", ops.delete_session("s")),
        ("list_sessions", ops.list_sessions(10, "cursor", 100)),
        ("add_messages", ops.add_messages("s", [message], "u")),
        ("last_messages", ops.last_messages("s", 10, 100)),
        ("update_message_metadata", ops.update_message_metadata("s", "m", {"a": 1})),
        ("create_user", ops.create_user(CreateUserRequest(user_id="u", email="a@b.c"))),
        ("get_user", ops.get_user("u")),
        ("update_user", ops.update_user(UpdateUserRequest(user_id="u", first_name="A"))),
        ("delete_user", ops.delete_user("u")),
        ("list_users", ops.list_users(None, None, 100)),
        ("user_sessions", ops.user_sessions("u", 100)),
    ]


def assert_variables_accepted(schema: GraphQLSchema, call: Call) -> None:
    operation = get_operation_ast(parse(call.document))
    assert operation is not None
    sent = json.loads(call.body())  # as the server receives them
    assert sent["operationName"] == call.operation
    assert sent["query"] == call.document
    coerced = get_variable_values(schema, operation.variable_definitions, sent["variables"])
    assert not isinstance(coerced, list), f"{call.operation}: {coerced}"


@pytest.mark.parametrize(("name", "op"), first_calls(), ids=[n for n, _ in first_calls()])
def test_the_variables_the_client_builds_are_accepted(
    schema: GraphQLSchema, name: str, op: Generator[Call, dict[str, Any], Any]
) -> None:
    call = next(op)
    assert call.operation in documents.OPERATIONS
    assert_variables_accepted(schema, call)
    if name == "update_message_metadata":  # its second request
        second = op.send({"memory": {"uuid": "m", "session": {"sessionId": "s"}}})
        assert second.operation == "UpdateMemory"
        assert_variables_accepted(schema, second)
    op.close()


def test_message_input_uses_the_schema_spelling() -> None:
    call = next(ops.add_messages("s", [Message(role_type="norole", content="x")], None))
    (item,) = call.variables["input"]["memories"]
    assert item["roleType"] == "NOROLE"
    assert item["uuid"]


def test_every_document_is_used_and_no_other_module_holds_one() -> None:
    pattern = re.compile(
        r"\b(query|mutation|subscription|fragment)\s+\w+\s*(\([^)]*\))?\s*(on\s+\w+\s*)?\{"
    )
    for path in sorted(CLIENT.glob("*.py")):
        if path.name == "documents.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not pattern.search(node.value), f"a GraphQL document in {path.name}"
    source = (CLIENT / "operations.py").read_text()
    for name in documents.OPERATIONS:
        assert f'"{name}"' in source, f"{name} is never sent"
