"""Shared fixtures: one database server per test run, one client per run, one database per test.

The server is the embedded engine (started here, spoken to over the wire with the real driver) or,
when ``MEMVAULT_MONGODB_URI`` is set, that MongoDB.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio

from memvault.config import Settings
from memvault.db.engine import EmbeddedEngine, connect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The database server for the whole run."""
    external = os.environ.get("MEMVAULT_MONGODB_URI")
    if external:
        yield external
        return
    engine = EmbeddedEngine(tmp_path_factory.mktemp("engine"))
    engine.start()
    try:
        yield engine.uri
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def embedded(mongo_uri: str) -> bool:
    """True when the tests run against the embedded engine."""
    return not os.environ.get("MEMVAULT_MONGODB_URI")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mongo_client(mongo_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """One client for the run: it is bound to the session's event loop."""
    client = connect(mongo_uri)
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def db(
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A fresh database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    database = mongo_client[name]
    try:
        yield database
    finally:
        await mongo_client.drop_database(name)


@pytest.fixture
def settings(db: AsyncDatabase[dict[str, Any]], tmp_path: Path) -> Settings:
    """Settings for an app bound to this test's database; no purge task, no key cache."""
    return Settings(database=db.name, data_dir=tmp_path, purge_interval=0, auth_cache_seconds=0)


@pytest_asyncio.fixture(loop_scope="session")
async def http(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process, with the app's lifespan run around it."""
    from memvault.main import create_app

    app = create_app(settings, client=mongo_client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://memvault.test"
        ) as client:
            yield client


class GraphQLClient:
    """Posts GraphQL documents; ``ok`` insists on no errors, ``error`` on exactly one."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def raw(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        # ASCII-escaped JSON, so tests can send any string, lone surrogates included
        payload = json.dumps({"query": query, "variables": variables or {}})
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        response = await self.http.post("/graphql", content=payload, headers=headers, **kwargs)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def ok(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        body = await self.raw(query, variables, **kwargs)
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def error(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        body = await self.raw(query, variables, **kwargs)
        errors = body.get("errors") or []
        assert len(errors) == 1, body
        error: dict[str, Any] = errors[0]
        return error


@pytest.fixture
def gql(http: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(http)


async def snapshot(db: AsyncDatabase[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every stored user, session and memory, to prove that a request changed nothing."""
    state = {}
    for name in ("users", "sessions", "memories"):
        cursor = (
            db[name].find({}, {"_id": 0}).sort([("project_id", 1), ("order_key", 1), ("seq", 1)])
        )
        state[name] = await cursor.to_list()
    return state
