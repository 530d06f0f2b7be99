"""Hostile input: each gets a clear error code, none a 500, and none changes stored data."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.graphql import GraphQLClient, snapshot

Db = AsyncDatabase[dict[str, Any]]

SEED = """mutation {
  createUser(input: {userId: "u1", metadata: {tier: "gold", n: 1}}) { userId }
  addMemories(input: {sessionId: "s1", userId: "u1", memories: [{uuid: "m1", roleType: USER, content: "hi"}]}) { session { sessionId } }
}"""
CREATE_USER = "mutation($input: CreateUserInput!) { createUser(input: $input) { userId } }"
UPDATE_USER = "mutation($input: UpdateUserInput!) { updateUser(input: $input) { userId } }"
UPDATE_SESSION = (
    "mutation($input: UpdateSessionInput!) { updateSession(input: $input) { sessionId } }"
)
ADD = "mutation($input: AddMemoriesInput!) { addMemories(input: $input) { memories { uuid } } }"
USERS = "query($filter: UserFilter, $first: Int) { users(filter: $filter, first: $first) { totalCount nodes { userId } } }"


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.fixture
async def seeded(gql: GraphQLClient, db: Db) -> dict[str, list[dict[str, Any]]]:
    await gql.ok(SEED)
    return await snapshot(db)


BAD_INPUTS: dict[str, tuple[str, dict[str, Any], str]] = {
    # operator injection in metadata keys
    "dollar key": (
        UPDATE_USER,
        {"input": {"userId": "u1", "metadata": {"$set": {"x": 1}}}},
        "metadata",
    ),
    "dotted key": (UPDATE_USER, {"input": {"userId": "u1", "metadata": {"a.b": 1}}}, "metadata"),
    "nested dollar key": (
        UPDATE_SESSION,
        {"input": {"sessionId": "s1", "metadata": {"a": {"$where": "1"}}}},
        "metadata.a",
    ),
    "NUL in key": (
        UPDATE_USER,
        {"input": {"userId": "u1", "metadata": {"a\u0000b": 1}}},
        "metadata",
    ),
    "empty key": (UPDATE_USER, {"input": {"userId": "u1", "metadata": {"": 1}}}, "metadata"),
    "long key": (UPDATE_USER, {"input": {"userId": "u1", "metadata": {"k" * 129: 1}}}, "metadata"),
    "metadata not an object": (
        UPDATE_USER,
        {"input": {"userId": "u1", "metadata": [1, 2]}},
        "metadata",
    ),
    "metadata a string": (CREATE_USER, {"input": {"userId": "u2", "metadata": "x"}}, "metadata"),
    # huge and deep JSON
    "metadata too large": (
        UPDATE_USER,
        {"input": {"userId": "u1", "metadata": {"big": "x" * 40_000}}},
        "metadata",
    ),
    "metadata too deep": (
        UPDATE_USER,
        {"input": {"userId": "u1", "metadata": nested(11)}},
        "metadata",
    ),
    "metadata list too deep": (
        UPDATE_USER,
        {"input": {"userId": "u1", "metadata": {"l": [[[[[[[[[[[1]]]]]]]]]]]}}},
        "metadata",
    ),
    # operator injection in filters
    "filter operator value": (
        USERS,
        {"filter": {"metadata": {"tier": {"$ne": None}}}},
        "filter.metadata",
    ),
    "filter where key": (
        USERS,
        {"filter": {"metadata": {"$where": "sleep(1000)"}}},
        "filter.metadata",
    ),
    "filter dotted key": (USERS, {"filter": {"metadata": {"a.b": 1}}}, "filter.metadata"),
    "filter null value": (USERS, {"filter": {"metadata": {"tier": None}}}, "filter.metadata"),
    # ids
    "control char in id": (CREATE_USER, {"input": {"userId": "a\u0007b"}}, "userId"),
    "newline in id": (CREATE_USER, {"input": {"userId": "a\nb"}}, "userId"),
    "lone surrogate in id": (CREATE_USER, {"input": {"userId": "a\ud800b"}}, "userId"),
    "empty id": (CREATE_USER, {"input": {"userId": ""}}, "userId"),
    "id too long": (CREATE_USER, {"input": {"userId": "x" * 257}}, "userId"),
    "bad email": (CREATE_USER, {"input": {"userId": "u3", "email": "not-an-email"}}, "email"),
    "control char in session id": (
        ADD,
        {"input": {"sessionId": "s\u0000", "memories": [{"roleType": "USER", "content": "x"}]}},
        "sessionId",
    ),
    # memories
    "empty content": (
        ADD,
        {"input": {"sessionId": "s1", "memories": [{"roleType": "USER", "content": ""}]}},
        "content",
    ),
    "content too large": (
        ADD,
        {
            "input": {
                "sessionId": "s1",
                "memories": [{"roleType": "USER", "content": "x" * (256 * 1024 + 1)}],
            }
        },
        "content",
    ),
    "no memories": (ADD, {"input": {"sessionId": "s1", "memories": []}}, "memories"),
    "too many memories": (
        ADD,
        {"input": {"sessionId": "s1", "memories": [{"roleType": "USER", "content": "x"}] * 1001}},
        "memories",
    ),
    "negative token count": (
        ADD,
        {
            "input": {
                "sessionId": "s1",
                "memories": [{"roleType": "USER", "content": "x", "tokenCount": -5}],
            }
        },
        "tokenCount",
    ),
    "second memory bad": (
        ADD,
        {
            "input": {
                "sessionId": "s9",
                "memories": [
                    {"roleType": "USER", "content": "ok"},
                    {"roleType": "USER", "content": "y", "metadata": {"$x": 1}},
                ],
            }
        },
        "memories[1].metadata",
    ),
    # pagination
    "enormous first": (USERS, {"first": 1_000_000}, "first"),
    "negative first": (USERS, {"first": -1}, "first"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
async def test_bad_input_is_rejected_and_writes_nothing(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]], case: str
) -> None:
    document, variables, field = BAD_INPUTS[case]
    error = await gql.error(document, variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert field in error["message"], error["message"]
    assert await snapshot(db) == seeded


GRAPHQL_ABUSE: dict[str, tuple[str, str]] = {
    "too deep": (
        "{ users { nodes { sessions { nodes { user { sessions { nodes { user { sessions { nodes { user { userId } } } } } } } } } } } }",
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "alias bomb": (
        "{ " + " ".join(f"a{i}: users {{ totalCount }}" for i in range(50)) + " }",
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "fragment cycle": (
        "fragment A on Query { ...B } fragment B on Query { ...A } { ...A }",
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "token bomb": ("{ " + "__typename " * 6000 + "}", "GRAPHQL_PARSE_FAILED"),
    "syntax error": ("{ users { ", "GRAPHQL_PARSE_FAILED"),
    "unknown field": ("{ userz { id } }", "GRAPHQL_VALIDATION_FAILED"),
    "int overflow": ("{ users(first: 99999999999) { totalCount } }", "GRAPHQL_VALIDATION_FAILED"),
}


@pytest.mark.parametrize("case", list(GRAPHQL_ABUSE), ids=list(GRAPHQL_ABUSE))
async def test_abusive_documents_are_refused(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]], case: str
) -> None:
    document, code = GRAPHQL_ABUSE[case]
    body = await gql.raw(document)
    assert body["data"] is None
    assert {e["extensions"]["code"] for e in body["errors"]} == {code}
    assert await snapshot(db) == seeded


async def test_no_field_suggestions(gql: GraphQLClient) -> None:
    error = await gql.error('{ user(userId: "u1") { usrId } }')
    assert "Did you mean" not in error["message"]


async def test_introspection_for_graphiql_passes_the_limits(gql: GraphQLClient) -> None:
    from graphql import get_introspection_query

    data = await gql.ok(get_introspection_query())
    assert data["__schema"]["queryType"]["name"] == "Query"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"query": "{ __typename }", "variables": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"query": "{ __typename \xff\xfe }"}',
        json.dumps(
            [{"query": "{ __typename }"}, {"query": "{ __typename }"}]
        ).encode(),  # batching is off
    ],
    ids=["not json", "deeply nested json", "invalid utf-8", "batch"],
)
async def test_malformed_bodies_get_400(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]], body: bytes
) -> None:
    response = await gql.http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert await snapshot(db) == seeded


async def test_injection_in_filter_values_matches_literally(
    gql: GraphQLClient, seeded: Any
) -> None:
    data = await gql.ok(USERS, {"filter": {"metadata": {"tier": "gold"}}})
    assert data["users"]["totalCount"] == 1
    data = await gql.ok(USERS, {"filter": {"metadata": {"tier": '{"$ne": null}'}}})
    assert data["users"]["totalCount"] == 0
    data = await gql.ok('{ user(userId: "{\\"$ne\\": null}") { userId } }')
    assert data == {"user": None}
