"""Errors about the request itself are classified by their type, not by their message.

A document that does not parse is GRAPHQL_PARSE_FAILED (a ``GraphQLSyntaxError``); one that does
not validate is GRAPHQL_VALIDATION_FAILED (the document store marks its validation errors
``DocumentInvalid``; graphql-core's other errors before execution are about the document too);
variables whose values do not fit are BAD_USER_INPUT (the executor marks the errors of coercing
them ``VariablesInvalid``). Before, the message decided: a validation error about a variable
("Variable '$x' is never used") was BAD_USER_INPUT, and any error before execution whose message
began "Syntax Error" a parse failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from graphql import GraphQLError, GraphQLSyntaxError, Source

from memvault.schema.errors import DocumentInvalid, VariablesInvalid, error_code, marked
from tests.support.graphql import snapshot

if TYPE_CHECKING:
    from typing import Any

    from pymongo.asynchronous.database import AsyncDatabase

    from tests.support.graphql import GraphQLClient

CREATE = "mutation($id: String!) { createUser(input: {userId: $id}) { userId } }"

# (document, variables, code)
CASES: dict[str, tuple[str, dict[str, Any] | None, str]] = {
    "syntax": ("{ users(", None, "GRAPHQL_PARSE_FAILED"),
    "too many bytes": ("{ __typename }" + " " * 70_000, None, "GRAPHQL_PARSE_FAILED"),
    "unknown field": ("{ nope }", None, "GRAPHQL_VALIDATION_FAILED"),
    "unused variable": (
        'query($x: Int) { user(userId: "u") { userId } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "undefined variable": ("{ user(userId: $u) { userId } }", None, "GRAPHQL_VALIDATION_FAILED"),
    "variable in the wrong place": (
        "query($n: Int) { user(userId: $n) { userId } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "variable of the wrong type": (CREATE, {"id": 5}, "BAD_USER_INPUT"),
    "missing variable": (CREATE, {}, "BAD_USER_INPUT"),
    "null for a non-null variable": (CREATE, {"id": None}, "BAD_USER_INPUT"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_request_errors_have_the_code_of_their_kind(
    case: str, gql: GraphQLClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    document, variables, code = CASES[case]
    before = await snapshot(db)
    error = await gql.error(document, variables)
    assert error["extensions"]["code"] == code, error
    assert await snapshot(db) == before


def test_the_type_decides_not_the_message() -> None:
    assert error_code(GraphQLSyntaxError(Source("{"), 1, "Expected Name")) == "GRAPHQL_PARSE_FAILED"
    assert error_code(GraphQLError("Syntax Error: said a resolver")) == "GRAPHQL_VALIDATION_FAILED"
    assert error_code(GraphQLError("Variable '$x' is never used.")) == "GRAPHQL_VALIDATION_FAILED"
    assert error_code(VariablesInvalid("Variable values are nested too deeply.")) == (
        "BAD_USER_INPUT"
    )
    assert error_code(DocumentInvalid("Unknown argument")) == "GRAPHQL_VALIDATION_FAILED"


def test_marking_keeps_what_the_client_sees() -> None:
    source = Source("query($x: Int) { a }")
    error = GraphQLError("Variable '$x' is never used.", source=source, positions=[6])
    (same,) = marked([error], DocumentInvalid)
    assert isinstance(same, DocumentInvalid)
    assert same.formatted == error.formatted
    assert marked([same], DocumentInvalid)[0] is same
