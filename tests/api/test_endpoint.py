"""``/graphql``'s direct path for JSON operations answers exactly as Strawberry's view does.

Every request below is sent to two apps on one database: one executing plain JSON operations
itself (as served) and one handing every request to Strawberry's view. Status, content type and
body must be the same (request ids aside), for good requests and bad ones alike.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio

from memvault.http.endpoint import GraphQLEndpoint
from memvault.http.view import GraphQLApp, plain_operation
from memvault.main import create_app
from tests.support.asgi import running

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase
    from starlette.applications import Starlette

    from memvault.config import Settings

JSON = {"content-type": "application/json"}
TWO_OPERATIONS = "query A { __typename } query B { users(first: 1) { totalCount } }"
WINDOW = """query($id: String!) { session(sessionId: $id) { sessionId memoryCount
    memories(last: 2) { nodes { uuid role content } pageInfo { hasPreviousPage } } } }"""
ADD = """mutation($input: AddMemoriesInput!) { addMemories(input: $input) {
    session { sessionId memoryCount } memories { uuid seq content } } }"""
ADD_AS = """mutation($role: RoleType!) { addMemories(input: {sessionId: "s-2", memories: [
    {uuid: "m-x", roleType: $role, role: "a", content: "x"}]}) { session { sessionId } } }"""
ADD_USR = ADD_AS.replace("$role: RoleType!", "").replace("()", "").replace("$role", "USR")
COSTLY = """{ sessions(first: 100) { nodes { memories(first: 100) { nodes { session {
    memories(first: 100) { nodes { seq } } } } } } } }"""
COSTLY_BY = """query($n: Int) { sessions(first: $n) { nodes { memories(first: $n) { nodes {
    session { memories(first: $n) { nodes { seq } } } } } } } }"""
SEED = {
    "sessionId": "s-1",
    "memories": [
        {"uuid": f"m-{n}", "roleType": "USER", "role": "alice", "content": f"hello {n}"}
        for n in range(3)
    ],
}


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


# (name, headers, body): each is posted to /graphql
REQUESTS: list[tuple[str, dict[str, str], bytes]] = [
    ("typename", JSON, body(query="{ __typename }")),
    ("window", JSON, body(query=WINDOW, variables={"id": "s-1"})),
    ("missing session", JSON, body(query=WINDOW, variables={"id": "nope"})),
    ("idempotent mutation", JSON, body(query=ADD, variables={"input": SEED})),
    ("chosen operation", JSON, body(query=TWO_OPERATIONS, operationName="B")),
    ("unknown operation", JSON, body(query=TWO_OPERATIONS, operationName="C")),
    ("lone surrogate operation name", JSON, body(query=TWO_OPERATIONS, operationName="\ud800")),
    ("two operations, no name", JSON, body(query=TWO_OPERATIONS)),
    ("syntax error", JSON, body(query="{ users(")),
    ("unknown field", JSON, body(query="{ nope }")),
    ("bad argument", JSON, body(query='{ session(sessionId: "") { sessionId } }')),
    ("variable of the wrong type", JSON, body(query=WINDOW, variables={"id": 5})),
    ("missing variable", JSON, body(query=WINDOW)),
    ("empty query", JSON, body(query="")),
    ("null query", JSON, body(query=None)),
    ("no query", JSON, body(variables={})),
    ("query not a string", JSON, body(query=5)),
    ("variables not an object", JSON, body(query="{ __typename }", variables=[1])),
    ("extensions not an object", JSON, body(query="{ __typename }", extensions="x")),
    ("extensions object", JSON, body(query="{ __typename }", extensions={"a": 1})),
    ("operation name not a string", JSON, body(query="{ __typename }", operationName=5)),
    ("operation name null", JSON, body(query="{ __typename }", operationName=None)),
    ("malformed JSON", JSON, b'{"query": '),
    ("not UTF-8", JSON, b'{"query": "\xff"}'),
    ("nested too deeply", JSON, b"[" * 100_000 + b"]" * 100_000),
    ("batch", JSON, b'[{"query": "{ __typename }"}]'),
    ("a string", JSON, b'"{ __typename }"'),
    ("empty body", JSON, b""),
    ("charset", {"content-type": "application/json; charset=utf-8"}, body(query="{ __typename }")),
    ("upper case type", {"content-type": "Application/JSON"}, body(query="{ __typename }")),
    ("text/plain", {"content-type": "text/plain"}, body(query="{ __typename }")),
    ("no content type", {}, body(query="{ __typename }")),
    ("multipart accept", {**JSON, "accept": "multipart/mixed"}, body(query="{ __typename }")),
    ("any accept", {**JSON, "accept": "*/*"}, body(query="{ __typename }")),
    ("mutation error", JSON, body(query=ADD, variables={"input": {**SEED, "sessionId": ""}})),
    ("query too complex", JSON, body(query=COSTLY)),
    ("query too complex by a variable", JSON, body(query=COSTLY_BY, variables={"n": 100})),
    ("enum variable misspelt", JSON, body(query=ADD_AS, variables={"role": "USR"})),
    ("enum value misspelt", JSON, body(query=ADD_USR)),
    ("unused variable", JSON, body(query="query($a: Int) { __typename }")),
]
# GraphQL over HTTP's own media type: 4xx without data when nothing ran, 200 otherwise
GRAPHQL_RESPONSE = {"accept": "application/graphql-response+json"}
REQUESTS += [
    (f"{name}, graphql-response+json", {**headers, **GRAPHQL_RESPONSE}, payload)
    for name, headers, payload in REQUESTS
    if name
    in {
        "typename",
        "missing session",
        "unknown operation",
        "two operations, no name",
        "syntax error",
        "unknown field",
        "variable of the wrong type",
        "missing variable",
        "malformed JSON",
        "batch",
        "text/plain",
        "mutation error",
        "query too complex",
        "enum variable misspelt",
        "enum value misspelt",
        "unused variable",
    }
]
REQUESTS += [
    (
        "both types accepted",
        {**JSON, "accept": "application/json, application/graphql-response+json;q=0.9"},
        body(query="{ __typename }"),
    ),
    (
        "graphql-response+json refused",
        {**JSON, "accept": "application/graphql-response+json;q=0, application/json"},
        body(query="{ nope }"),
    ),
]

# Automatic persisted queries: resolved before either way, so both answer them alike
TYPENAME_HASH = hashlib.sha256(b"{ __typename }").hexdigest()
PERSISTED = {"persistedQuery": {"version": 1, "sha256Hash": TYPENAME_HASH}}
PERSISTED_WINDOW = {
    "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(WINDOW.encode()).hexdigest()}
}
REQUESTS += [
    (
        "persisted query unknown",
        JSON,
        body(extensions={"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}),
    ),
    (
        "persisted query unknown, graphql-response+json",
        {**JSON, **GRAPHQL_RESPONSE},
        body(extensions={"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}),
    ),
    ("persisted query registered", JSON, body(query="{ __typename }", extensions=PERSISTED)),
    ("persisted query wrong hash", JSON, body(query="{ nope }", extensions=PERSISTED)),
    (
        "persisted query version 2",
        JSON,
        body(extensions={"persistedQuery": {"version": 2, "sha256Hash": TYPENAME_HASH}}),
    ),
]


def endpoint_of(app: Starlette) -> GraphQLEndpoint:
    route = next(route for route in app.routes if getattr(route, "path", "") == "/graphql")
    endpoint = route.endpoint  # type: ignore[attr-defined]
    assert isinstance(endpoint, GraphQLEndpoint)
    return endpoint


@pytest_asyncio.fixture(loop_scope="session")
async def clients(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One HTTP client per way through ``/graphql``: ``direct`` and ``view``."""
    apps = {"direct": create_app(settings, client=mongo_client)}
    apps["view"] = create_app(settings, client=mongo_client)
    endpoint_of(apps["view"]).lean = False
    async with running(apps["direct"]) as direct, running(apps["view"]) as view:
        clients = {
            name: httpx.AsyncClient(
                transport=httpx.ASGITransport(app=served), base_url="http://memvault.test"
            )
            for name, served in (("direct", direct), ("view", view))
        }
        seeded = await clients["view"].post("/graphql", content=REQUESTS[3][2], headers=JSON)
        assert "errors" not in seeded.json()
        yield clients
        for client in clients.values():
            await client.aclose()


def answer(response: httpx.Response) -> tuple[int, str, str]:
    """Status, content type and body, with request ids (random per request) blanked."""
    text = re.sub(r'"requestId":"[0-9a-f]+"', '"requestId":"-"', response.text)
    return response.status_code, response.headers.get("content-type", ""), text


@pytest.mark.parametrize(("name", "headers", "payload"), REQUESTS, ids=[r[0] for r in REQUESTS])
async def test_direct_path_answers_as_the_view(
    clients: dict[str, httpx.AsyncClient], name: str, headers: dict[str, str], payload: bytes
) -> None:
    answers = {
        way: answer(await client.post("/graphql", content=payload, headers=headers))
        for way, client in clients.items()
    }
    assert answers["direct"] == answers["view"]


async def test_stored_persisted_query_answers_alike(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """A hash alone, once its query is stored, runs it on both ways, POST and GET."""
    stored = await clients["view"].post(
        "/graphql",
        content=body(query=WINDOW, variables={"id": "s-1"}, extensions=PERSISTED_WINDOW),
        headers=JSON,
    )
    assert stored.json()["data"]["session"]["memoryCount"] == 3
    alone = body(variables={"id": "s-1"}, extensions=PERSISTED_WINDOW)
    posted = {
        way: answer(await c.post("/graphql", content=alone, headers=JSON))
        for way, c in clients.items()
    }
    assert posted["direct"] == posted["view"] == answer(stored)
    params = {"variables": '{"id": "s-1"}', "extensions": json.dumps(PERSISTED_WINDOW)}
    got = {way: answer(await c.get("/graphql", params=params)) for way, c in clients.items()}
    assert got["direct"] == got["view"] == answer(stored)


def test_plain_operation_takes_only_well_formed_json_operations() -> None:
    """Which requests the direct path takes (the rest go to the view): the differential test
    above only proves equal answers, so this proves the direct path is the one serving."""
    from starlette.datastructures import Headers

    def taken(headers: dict[str, str], payload: bytes) -> bool:
        return plain_operation(Headers(headers), payload, GraphQLApp.decode_json) is not None

    taken_names = {name for name, headers, payload in REQUESTS if taken(headers, payload)}
    assert taken_names == {
        "typename",
        "window",
        "missing session",
        "idempotent mutation",
        "chosen operation",
        "unknown operation",
        "two operations, no name",
        "syntax error",
        "unknown field",
        "bad argument",
        "variable of the wrong type",
        "missing variable",
        "extensions object",
        "operation name null",
        "charset",
        "any accept",
        "mutation error",
        "query too complex",
        "query too complex by a variable",
        "enum variable misspelt",
        "enum value misspelt",
        "unused variable",
        "both types accepted",
        "graphql-response+json refused",
        "persisted query registered",
        "persisted query wrong hash",
    } | {
        f"{name}, graphql-response+json"
        for name in (
            "typename",
            "missing session",
            "unknown operation",
            "two operations, no name",
            "syntax error",
            "unknown field",
            "variable of the wrong type",
            "missing variable",
            "mutation error",
            "query too complex",
            "enum variable misspelt",
            "enum value misspelt",
            "unused variable",
        )
    }


@pytest.mark.parametrize("payload", [b'"{ __typename }"', b"5", b"null", b"true"])
async def test_json_body_that_is_not_an_object_is_a_400(
    clients: dict[str, httpx.AsyncClient], payload: bytes
) -> None:
    """Strawberry's view failed on these with a 500; both ways now refuse them."""
    response = await clients["direct"].post("/graphql", content=payload, headers=JSON)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "data": None,
        "errors": [
            {
                "message": "The request body must be a JSON object",
                "extensions": {"code": "BAD_REQUEST"},
            }
        ],
    }


NAME_REQUIRED = {
    "data": None,
    "errors": [
        {
            "message": "Must provide operation name if query contains multiple operations.",
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
        }
    ],
}
MUTATION_FIRST = 'mutation A { createUser(input: {userId: "a"}) { userId } } query B { __typename }'


@pytest.mark.parametrize("way", ["direct", "view"])
async def test_several_operations_without_a_name_are_refused(
    clients: dict[str, httpx.AsyncClient], db: AsyncDatabase[dict[str, Any]], way: str
) -> None:
    """The first operation ran; the GraphQL spec makes this an error. HTTP 400 like an unknown
    operation name, with a GraphQL error in the body; nothing runs."""
    http = clients[way]
    response = await http.post("/graphql", content=body(query=MUTATION_FIRST), headers=JSON)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == NAME_REQUIRED
    assert await db.users.count_documents({"user_id": "a"}) == 0
    named = body(query=MUTATION_FIRST, operationName="A")
    response = await http.post("/graphql", content=named, headers=JSON)
    assert response.json() == {"data": {"createUser": {"userId": "a"}}}


async def test_several_operations_without_a_name_are_refused_over_get(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    response = await clients["direct"].get("/graphql", params={"query": TWO_OPERATIONS})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == NAME_REQUIRED
    named = {"query": TWO_OPERATIONS, "operationName": "A"}
    response = await clients["direct"].get("/graphql", params=named)
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    "document",
    [
        "{ __typename }",
        "query { __typename }",
        "query Named { __typename }",
        "query Named { ...F } fragment F on Query { __typename }",
    ],
)
async def test_one_operation_needs_no_name(
    clients: dict[str, httpx.AsyncClient], document: str
) -> None:
    for http in clients.values():
        response = await http.post("/graphql", content=body(query=document), headers=JSON)
        assert response.json() == {"data": {"__typename": "Query"}}
    response = await clients["direct"].get("/graphql", params={"query": document})
    assert response.json() == {"data": {"__typename": "Query"}}
