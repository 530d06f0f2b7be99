"""GraphQL over HTTP (the spec's current draft), request by request: the status, the media type
and the error code of each answer. Every answer that is not 2xx is a GraphQL error with
``extensions.code``; ``application/graphql-response+json`` when the client accepts it (4xx and no
``data`` when nothing ran), ``application/json`` otherwise; no "Did you mean" anywhere.

Before: a mutation over GET, another content type and a body that is not JSON answered
``400 text/plain``; ``Accept: application/graphql-response+json`` was ignored (200, ``"data":
null``); 401s had no ``WWW-Authenticate``; enum values got suggestions.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from memvault.main import create_app
from tests.support.asgi import running

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.config import Settings

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
URQL = f"{GRAPHQL_RESPONSE}, application/graphql+json, {JSON}, text/event-stream, multipart/mixed"
APOLLO = f"{GRAPHQL_RESPONSE},{JSON};q=0.9"
CREATE = 'mutation { createUser(input: {userId: "over-get"}) { userId } }'
ROLE = """mutation($role: RoleType!) { addMemories(input: {sessionId: "s", memories: [
    {uuid: "m", roleType: $role, role: "a", content: "x"}]}) { session { sessionId } } }"""


def post(document: str | None = None, accept: str | None = None, **fields: Any) -> dict[str, Any]:
    headers = {"content-type": JSON} | ({"accept": accept} if accept else {})
    payload = {"query": document, **fields} if document is not None else fields
    return {"method": "POST", "headers": headers, "content": json.dumps(payload).encode()}


def get(document: str, accept: str | None = None) -> dict[str, Any]:
    headers = {"accept": accept} if accept else {}
    return {"method": "GET", "headers": headers, "params": {"query": document}}


# name: (request, status, content type, code of the first error or None, data key expected)
CASES: dict[str, tuple[dict[str, Any], int, str, str | None, bool]] = {
    "query, json": (post("{ __typename }"), 200, JSON, None, True),
    "query, graphql-response": (post("{ __typename }", GRAPHQL_RESPONSE), 200, GRAPHQL_RESPONSE, None, True),
    "query over GET, graphql-response": (get("{ __typename }", GRAPHQL_RESPONSE), 200, GRAPHQL_RESPONSE, None, True),
    "both accepted": (post("{ __typename }", f"{JSON};q=0.5, {GRAPHQL_RESPONSE}"), 200, GRAPHQL_RESPONSE, None, True),
    "graphql-response at q=0": (post("{ nope }", f"{GRAPHQL_RESPONSE};q=0, {JSON}"), 200, JSON, "GRAPHQL_VALIDATION_FAILED", True),
    "urql's Accept": (post("{ __typename }", URQL), 200, GRAPHQL_RESPONSE, None, True),
    "urql's Accept, validation failure": (post("{ nope }", URQL), 400, GRAPHQL_RESPONSE, "GRAPHQL_VALIDATION_FAILED", False),
    "Apollo Client's Accept, validation failure": (post("{ nope }", APOLLO), 400, GRAPHQL_RESPONSE, "GRAPHQL_VALIDATION_FAILED", False),
    "json and multipart accepted, validation failure": (post("{ nope }", f"{JSON}, multipart/mixed"), 200, JSON, "GRAPHQL_VALIDATION_FAILED", True),
    "neither accepted": (post("{ __typename }", "text/html"), 200, JSON, None, True),
    "mutation over GET": (get(CREATE), 405, JSON, "METHOD_NOT_ALLOWED", True),
    "mutation over GET, graphql-response": (get(CREATE, GRAPHQL_RESPONSE), 405, GRAPHQL_RESPONSE, "METHOD_NOT_ALLOWED", False),
    "PUT": ({"method": "PUT", "content": b"{}"}, 405, JSON, "METHOD_NOT_ALLOWED", True),
    "DELETE": ({"method": "DELETE"}, 405, JSON, "METHOD_NOT_ALLOWED", True),
    "OPTIONS without CORS": ({"method": "OPTIONS"}, 405, JSON, "METHOD_NOT_ALLOWED", True),
    "text/plain": ({"method": "POST", "headers": {"content-type": "text/plain"}, "content": b'{"query": "{ __typename }"}'}, 415, JSON, "UNSUPPORTED_MEDIA_TYPE", True),
    "no content type": ({"method": "POST", "content": b'{"query": "{ __typename }"}'}, 415, JSON, "UNSUPPORTED_MEDIA_TYPE", True),
    "form, graphql-response": ({"method": "POST", "headers": {"accept": GRAPHQL_RESPONSE}, "data": {"query": "{ __typename }"}}, 415, GRAPHQL_RESPONSE, "UNSUPPORTED_MEDIA_TYPE", False),
    "body not JSON": ({"method": "POST", "headers": {"content-type": JSON}, "content": b'{"query": '}, 400, JSON, "BAD_REQUEST", True),
    "body not JSON, graphql-response": ({"method": "POST", "headers": {"content-type": JSON, "accept": GRAPHQL_RESPONSE}, "content": b"{"}, 400, GRAPHQL_RESPONSE, "BAD_REQUEST", False),
    "body not an object": ({"method": "POST", "headers": {"content-type": JSON}, "content": b"[1]"}, 400, JSON, "BAD_REQUEST", True),
    "no query": (post(variables={}), 400, JSON, "BAD_REQUEST", True),
    "query not a string": (post(query=5), 400, JSON, "BAD_REQUEST", True),
    "GET, variables not JSON": ({"method": "GET", "params": {"query": "{ __typename }", "variables": "{"}}, 400, JSON, "BAD_REQUEST", True),
    "GET without a query": ({"method": "GET", "headers": {"accept": JSON}}, 400, JSON, "BAD_REQUEST", True),
    "parse failure, json": (post("{ users("), 200, JSON, "GRAPHQL_PARSE_FAILED", True),
    "parse failure, graphql-response": (post("{ users(", GRAPHQL_RESPONSE), 400, GRAPHQL_RESPONSE, "GRAPHQL_PARSE_FAILED", False),
    "validation failure, graphql-response": (post("{ nope }", GRAPHQL_RESPONSE), 400, GRAPHQL_RESPONSE, "GRAPHQL_VALIDATION_FAILED", False),
    "unused variable": (post("query($a: Int) { __typename }"), 200, JSON, "GRAPHQL_VALIDATION_FAILED", True),
    "unused variable, graphql-response": (post("query($a: Int) { __typename }", GRAPHQL_RESPONSE), 400, GRAPHQL_RESPONSE, "GRAPHQL_VALIDATION_FAILED", False),
    "unknown operation, graphql-response": (post("query A { __typename }", GRAPHQL_RESPONSE, operationName="B"), 400, GRAPHQL_RESPONSE, "GRAPHQL_VALIDATION_FAILED", False),
    "unknown operation over GET": ({"method": "GET", "params": {"query": "query A { __typename }", "operationName": "B"}}, 400, JSON, "GRAPHQL_VALIDATION_FAILED", True),
    "bad variable, graphql-response": (post(ROLE, GRAPHQL_RESPONSE, variables={"role": "USR"}), 400, GRAPHQL_RESPONSE, "BAD_USER_INPUT", False),
    "field error, graphql-response": (post('mutation { createUser(input: {userId: ""}) { userId } }', GRAPHQL_RESPONSE), 200, GRAPHQL_RESPONSE, "BAD_USER_INPUT", True),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
async def test_answer_of_each_request(
    http: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]], name: str
) -> None:
    request, status, media, code, has_data = CASES[name]
    response = await http.request(url="/graphql", **request)
    assert response.status_code == status
    assert response.headers["content-type"] == media
    answer = response.json()
    assert ("data" in answer) is has_data
    assert [e["extensions"]["code"] for e in answer.get("errors", [])][:1] == (
        [code] if code else []
    )
    if status == 405:
        allowed = "POST" if request["method"] == "GET" else "GET, POST"
        assert response.headers["allow"] == allowed
    assert await db.users.count_documents({}) == 0  # nothing refused ran


async def test_unauthenticated_names_the_scheme(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    app = create_app(dataclasses.replace(settings, auth="required"), client=mongo_client)
    async with (
        running(app) as served,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http,
    ):
        for accept, media in ((None, JSON), (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE)):
            response = await http.request(url="/graphql", **post("{ __typename }", accept))
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == media
            errors = response.json()["errors"]
            assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]
            bad_key = await http.post(
                "/graphql",
                content=b'{"query": "{ __typename }"}',
                headers={"content-type": JSON, "authorization": "Bearer nope"},
            )
            assert bad_key.status_code == 401
            assert bad_key.headers["www-authenticate"] == "Bearer"


async def test_graphiql_turned_off_is_a_graphql_404(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    app = create_app(dataclasses.replace(settings, graphiql=False), client=mongo_client)
    async with (
        running(app) as served,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http,
    ):
        response = await http.get("/graphql", headers={"accept": "text/html"})
        assert response.status_code == 404
        assert response.headers["content-type"] == JSON
        assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["NOT_FOUND"]


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        ("{ userz { totalCount } }", None),  # a field
        ('{ user(userID: "u") { userId } }', None),  # an argument
        ("query($n: Strin) { users(first: $n) { totalCount } }", None),  # a type
        (ROLE.replace("$role: RoleType!", "").replace("()", "").replace("$role", "USR"), None),
        (ROLE, {"role": "USR"}),  # an enum value in a variable
        (ROLE, {"role": "User"}),
    ],
)
async def test_no_suggestions(
    http: httpx.AsyncClient, document: str, variables: dict[str, Any] | None
) -> None:
    """graphql-core suggests close names ("Did you mean 'USER'?"); Strawberry removes them for
    fields only. No message names what the caller did not ask for."""
    for accept in (JSON, GRAPHQL_RESPONSE):
        response = await http.request(url="/graphql", **post(document, accept, variables=variables))
        errors = response.json()["errors"]
        assert errors
        for error in errors:
            assert "Did you mean" not in error["message"]
            assert error["extensions"]["code"] in {"GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}
