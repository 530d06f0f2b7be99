"""Automatic persisted queries (Apollo's APQ protocol, as Apollo Client and urql send it) and
trusted documents (``MEMVAULT_PERSISTED_ONLY`` with ``memvault documents add``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from memvault.main import create_app
from tests.support.asgi import running

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.config import Settings

    AppWith = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]

READ = "query($id: String!) { user(userId: $id) { userId } }"
CREATE = 'mutation { createUser(input: {userId: "u-apq"}) { userId } }'
NOT_FOUND = {
    "data": None,
    "errors": [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ],
}


def sha(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def apq(query: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(query)}}


def code_of(response: httpx.Response) -> str:
    code: str = response.json()["errors"][0]["extensions"]["code"]
    return code


@pytest.fixture
def app_with(settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]) -> AppWith:
    """An HTTP client to a new app on the test's database, with settings changed as given."""

    @contextlib.asynccontextmanager
    async def make(**changes: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(dataclasses.replace(settings, **changes), client=mongo_client)
        async with (
            running(app) as served,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=served), base_url="http://memvault.test"
            ) as client,
        ):
            yield client

    return make


async def test_round_trip(http: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]]) -> None:
    """What Apollo Client does: the hash alone, then hash and query once, then the hash alone
    (POST or GET) runs the stored query."""
    await http.post(
        "/graphql", json={"query": 'mutation { createUser(input: {userId: "u"}) { userId } }'}
    )
    variables = {"id": "u"}
    alone = {"variables": variables, "extensions": apq(READ)}
    response = await http.post("/graphql", json=alone)
    assert response.status_code == 200
    assert response.json() == NOT_FOUND
    assert await db.persisted_queries.count_documents({}) == 0
    response = await http.post("/graphql", json={"query": READ, **alone})
    assert response.json() == {"data": {"user": {"userId": "u"}}}
    stored = await db.persisted_queries.find_one({}, {"_id": 0, "sha256": 1, "query": 1})
    assert stored == {"sha256": sha(READ), "query": READ}
    response = await http.post("/graphql", json=alone)
    assert response.json() == {"data": {"user": {"userId": "u"}}}
    params = {"variables": json.dumps(variables), "extensions": json.dumps(apq(READ))}
    response = await http.get("/graphql", params=params)
    assert response.status_code == 200
    assert response.json() == {"data": {"user": {"userId": "u"}}}


async def test_get_by_hash_of_unknown_query(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", params={"extensions": json.dumps(apq(READ))})
    assert response.status_code == 200
    assert response.json() == NOT_FOUND


async def test_mutation_by_hash_over_get_is_a_405(
    http: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    registered = await http.post("/graphql", json={"query": CREATE, "extensions": apq(CREATE)})
    assert registered.json() == {"data": {"createUser": {"userId": "u-apq"}}}
    await db.users.delete_many({})
    response = await http.get("/graphql", params={"extensions": json.dumps(apq(CREATE))})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert code_of(response) == "METHOD_NOT_ALLOWED"
    assert await db.users.count_documents({}) == 0


async def test_wrong_hash_is_refused_and_nothing_stored(
    http: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    """Apollo Server's answer: 400, "provided sha does not match query"; nothing runs."""
    response = await http.post("/graphql", json={"query": CREATE, "extensions": apq(READ)})
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "message": "provided sha does not match query",
        "extensions": {"code": "BAD_REQUEST"},
    }
    assert await db.persisted_queries.count_documents({}) == 0
    assert await db.users.count_documents({}) == 0


@pytest.mark.parametrize(
    "persisted",
    [{"version": 2, "sha256Hash": "0" * 64}, {"version": 1, "sha256Hash": "xyz"}, "x", {}],
)
async def test_malformed_persisted_query_is_a_400(
    http: httpx.AsyncClient, persisted: object
) -> None:
    response = await http.post("/graphql", json={"extensions": {"persistedQuery": persisted}})
    assert response.status_code == 400
    assert code_of(response) == "BAD_REQUEST"


@pytest.mark.parametrize("extensions", ["[" * 20_000, "{", '"\\ud800'])
async def test_extensions_over_get_that_do_not_decode_are_a_400(
    http: httpx.AsyncClient, extensions: str
) -> None:
    """Regression: a GET's ``extensions`` nested too deeply to decode raised RecursionError (a
    500); it is read like a body now: not JSON is a 400."""
    response = await http.get("/graphql", params={"extensions": extensions})
    assert response.status_code == 400
    assert code_of(response) == "BAD_REQUEST"


async def test_only_valid_documents_are_stored(
    http: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    for query in ("{ nope }", "{ users(", "{ " + "__typename " * 5000 + "}"):
        response = await http.post("/graphql", json={"query": query, "extensions": apq(query)})
        assert code_of(response) in {"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"}
    assert await db.persisted_queries.count_documents({}) == 0


async def test_bounded_in_number(app_with: AppWith, db: AsyncDatabase[dict[str, Any]]) -> None:
    """Past MEMVAULT_MAX_PERSISTED_QUERIES a new query still runs, but is not stored."""
    queries = [f"query Q{n} {{ __typename }}" for n in range(3)]
    async with app_with(max_persisted_queries=2) as client:
        for query in queries:
            response = await client.post(
                "/graphql", json={"query": query, "extensions": apq(query)}
            )
            assert response.json() == {"data": {"__typename": "Query"}}
        assert await db.persisted_queries.count_documents({}) == 2
        response = await client.post("/graphql", json={"extensions": apq(queries[2])})
        assert response.json() == NOT_FOUND
        response = await client.post("/graphql", json={"extensions": apq(queries[0])})
        assert response.json() == {"data": {"__typename": "Query"}}


async def test_bounded_in_size(app_with: AppWith, db: AsyncDatabase[dict[str, Any]]) -> None:
    query = "{ __typename " + " " * 2000 + "}"
    async with app_with(max_query_bytes=1024) as client:
        response = await client.post("/graphql", json={"query": query, "extensions": apq(query)})
        assert code_of(response) == "GRAPHQL_PARSE_FAILED"
    assert await db.persisted_queries.count_documents({}) == 0


async def test_a_second_app_sees_the_stored_query(app_with: AppWith) -> None:
    query = "{ __typename }"
    async with app_with() as first, app_with() as second:
        response = await second.post("/graphql", json={"extensions": apq(query)})
        assert response.json() == NOT_FOUND
        await first.post("/graphql", json={"query": query, "extensions": apq(query)})
        response = await second.post("/graphql", json={"extensions": apq(query)})
        assert response.json() == {"data": {"__typename": "Query"}}


async def test_persisted_only_runs_registered_documents(
    app_with: AppWith, db: AsyncDatabase[dict[str, Any]]
) -> None:
    registered = "query Registered { __typename }"
    other = "query Other { __typename }"
    async with app_with() as client:  # registered through APQ while registration is on
        await client.post("/graphql", json={"query": registered, "extensions": apq(registered)})
    async with app_with(persisted_only=True) as client:
        for request in ({"query": other}, {"query": other, "extensions": apq(other)}):
            response = await client.post("/graphql", json=request)
            assert response.status_code == 400
            assert code_of(response) == "PERSISTED_QUERY_NOT_ALLOWED"
        response = await client.get("/graphql", params={"query": other})
        assert code_of(response) == "PERSISTED_QUERY_NOT_ALLOWED"
        response = await client.post("/graphql", json={"query": CREATE})
        assert code_of(response) == "PERSISTED_QUERY_NOT_ALLOWED"
        assert await db.users.count_documents({}) == 0
        assert await db.persisted_queries.count_documents({}) == 1
        expected = {"data": {"__typename": "Query"}}
        for request in (
            {"query": registered},
            {"extensions": apq(registered)},
            {"query": registered, "extensions": apq(registered)},
        ):
            response = await client.post("/graphql", json=request)
            assert response.json() == expected
        response = await client.get("/graphql", params={"extensions": json.dumps(apq(registered))})
        assert response.json() == expected


def documents_add(mongo_uri: str, database: str, *files: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMVAULT_MONGODB_URI": mongo_uri, "MEMVAULT_DATABASE": database}
    return subprocess.run(
        [sys.executable, "-m", "memvault", "documents", "add", *map(str, files)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_documents_add_registers_files(
    app_with: AppWith, db: AsyncDatabase[dict[str, Any]], mongo_uri: str, tmp_path: Path
) -> None:
    good = tmp_path / "read.graphql"
    good.write_text(READ)
    bad = tmp_path / "bad.graphql"
    bad.write_text("{ nope }")
    result = await asyncio.to_thread(documents_add, mongo_uri, db.name, good, bad)
    assert result.returncode == 1
    assert "bad.graphql" in result.stderr
    assert await db.persisted_queries.count_documents({}) == 0  # nothing unless all validate
    result = await asyncio.to_thread(documents_add, mongo_uri, db.name, good)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{sha(READ)}  {good}\n"
    await db.users.insert_one({"project_id": "default", "user_id": "x", "deleted_ms": 0})
    async with app_with(persisted_only=True) as client:
        for request in ({"extensions": apq(READ)}, {"query": READ}):
            response = await client.post("/graphql", json={**request, "variables": {"id": "x"}})
            assert response.json() == {"data": {"user": {"userId": "x"}}}


async def test_process_cache_is_bounded(
    settings: Settings,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each process keeps at most CACHE_SIZE documents; the collection still serves the rest."""
    from memvault.http import persisted
    from tests.api.test_endpoint import endpoint_of

    monkeypatch.setattr(persisted, "CACHE_SIZE", 2)
    app = create_app(settings, client=mongo_client)
    queries = [f"query Q{n} {{ __typename }}" for n in range(4)]
    async with (
        running(app) as served,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served), base_url="http://memvault.test"
        ) as client,
    ):
        for query in queries:
            await client.post("/graphql", json={"query": query, "extensions": apq(query)})
        assert list(endpoint_of(app).persisted.cache) == [sha(q) for q in queries[2:]]
        response = await client.post("/graphql", json={"extensions": apq(queries[0])})
        assert response.json() == {"data": {"__typename": "Query"}}
        assert list(endpoint_of(app).persisted.cache) == [sha(queries[3]), sha(queries[0])]
