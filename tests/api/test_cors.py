"""CORS (``MEMVAULT_CORS_ORIGINS``): what a browser on another origin is told, preflight and
actual request, for allowed and disallowed origins; nothing at all by default."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from memvault.db import api_keys
from memvault.main import create_app
from tests.support.asgi import running

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.config import Settings
    from tests.support.server import LiveServer

    AppWith = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]

APP = "http://localhost:5173"
OTHER = "https://evil.example"
JSON = {"content-type": "application/json"}
QUERY = json.dumps({"query": "{ __typename }"}).encode()
# What Apollo Client sends with a key: a preflight asking for all of these
REQUESTED_HEADERS = (
    "authorization, content-type, apollographql-client-name, apollo-require-preflight"
)


def preflight(origin: str, headers: str = "content-type") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": headers,
    }


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.fixture
def app_with(settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]) -> AppWith:
    """An HTTP client to an app with ``MEMVAULT_CORS_ORIGINS`` set to the given value."""

    @contextlib.asynccontextmanager
    async def make(origins: str) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(dataclasses.replace(settings, cors_origins=origins), client=mongo_client)
        async with (
            running(app) as served,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=served), base_url="http://memvault.test"
            ) as client,
        ):
            yield client

    return make


async def test_no_cors_headers_by_default(http: httpx.AsyncClient) -> None:
    answered = await http.options("/graphql", headers=preflight(APP))
    assert not 200 <= answered.status_code < 300
    assert cors_headers(answered) == {}
    posted = await http.post("/graphql", content=QUERY, headers={"origin": APP, **JSON})
    assert posted.json() == {"data": {"__typename": "Query"}}
    assert cors_headers(posted) == {}


async def test_allowed_origin_preflight_and_request(app_with: AppWith) -> None:
    async with app_with(f"https://other.example, {APP}") as client:
        answered = await client.options("/graphql", headers=preflight(APP, REQUESTED_HEADERS))
        assert answered.status_code == 200
        headers = cors_headers(answered)
        assert headers["access-control-allow-origin"] == APP
        assert {"GET", "POST"} <= set(headers["access-control-allow-methods"].split(", "))
        allowed = set(headers["access-control-allow-headers"].split(", "))
        assert {"authorization", "content-type", "api-key", "x-apollo-operation-name"} <= allowed
        assert "x-request-id" in allowed
        assert headers["access-control-max-age"] == "600"
        assert "access-control-allow-credentials" not in headers
        assert "Origin" in answered.headers["vary"]

        posted = await client.post("/graphql", content=QUERY, headers={"origin": APP, **JSON})
        assert posted.json() == {"data": {"__typename": "Query"}}
        # the script may read the request id (issue 17, item 6: README "Observability")
        assert cors_headers(posted) == {
            "access-control-allow-origin": APP,
            "access-control-expose-headers": "x-request-id",
        }
        assert "Origin" in posted.headers["vary"]

        fetched = await client.get("/graphql?query={__typename}", headers={"origin": APP})
        assert fetched.headers["access-control-allow-origin"] == APP


async def test_preflight_asking_for_more_is_refused_with_a_graphql_error(
    app_with: AppWith,
) -> None:
    async with app_with(APP) as client:
        for asked in (
            preflight(APP, "x-custom"),
            {**preflight(APP), "access-control-request-method": "PUT"},
        ):
            answered = await client.options("/graphql", headers=asked)
            assert answered.status_code == 400
            assert answered.headers["access-control-allow-origin"] == APP
            errors = answered.json()["errors"]
            assert [e["extensions"]["code"] for e in errors] == ["BAD_REQUEST"]
            assert errors[0]["message"].startswith("Disallowed CORS")


@pytest.mark.parametrize(
    "origin", [OTHER, APP + "/", "http://localhost:5174", "HTTP://LOCALHOST:5173", "null"]
)
async def test_disallowed_origin_gets_no_cors_headers(app_with: AppWith, origin: str) -> None:
    async with app_with(APP) as client:
        answered = await client.options("/graphql", headers=preflight(origin))
        assert not 200 <= answered.status_code < 300
        assert cors_headers(answered) == {}
        posted = await client.post("/graphql", content=QUERY, headers={"origin": origin, **JSON})
        assert posted.status_code == 200  # answered; the browser keeps it from the page
        assert cors_headers(posted) == {}


async def test_any_origin_only_while_no_key_exists(
    app_with: AppWith, db: AsyncDatabase[dict[str, Any]]
) -> None:
    async with app_with("*") as client:
        answered = await client.options("/graphql", headers=preflight(OTHER))
        assert answered.status_code == 200
        assert answered.headers["access-control-allow-origin"] == "*"
        posted = await client.post("/graphql", content=QUERY, headers={"origin": OTHER, **JSON})
        assert posted.headers["access-control-allow-origin"] == "*"

        _, key = await api_keys.create_key(db, project_id="acme", scope="read")
        answered = await client.options("/graphql", headers=preflight(OTHER))
        assert cors_headers(answered) == {}
        auth = {"origin": OTHER, "authorization": f"Bearer {key}", **JSON}
        posted = await client.post("/graphql", content=QUERY, headers=auth)
        assert posted.json() == {"data": {"__typename": "Query"}}
        assert cors_headers(posted) == {}


@pytest.mark.slow
def test_served_process_answers_cors(
    servers: Callable[..., LiveServer], serve_env: dict[str, str]
) -> None:
    server = servers({**serve_env, "MEMVAULT_CORS_ORIGINS": APP}).start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        answered = client.options("/graphql", headers=preflight(APP, REQUESTED_HEADERS))
        assert answered.status_code == 200
        assert answered.headers["access-control-allow-origin"] == APP
        posted = client.post("/graphql", content=QUERY, headers={"origin": APP, **JSON})
        assert posted.json() == {"data": {"__typename": "Query"}}
        assert posted.headers["access-control-allow-origin"] == APP
        refused = client.options("/graphql", headers=preflight(OTHER))
        assert cors_headers(refused) == {}
        assert cors_headers(client.post("/graphql", content=QUERY, headers={"origin": OTHER})) == {}
