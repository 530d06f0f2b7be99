"""Shared fixtures: one database server per test run, one client per run, one database per test;
the app in process (``http``, ``gql``); ``memvault serve`` processes (``serve_env``, ``servers``).

The server is the embedded engine (started here, spoken to over the wire with the real driver) or,
when ``MEMVAULT_MONGODB_URI`` is set, that MongoDB. Helpers live in ``tests/support``.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio
from pymongo import MongoClient

from memvault.config import Settings
from memvault.db.engine import EmbeddedEngine, connect
from tests.support.asgi import running
from tests.support.graphql import GraphQLClient
from tests.support.server import EXTERNAL_URI, LiveServer, serve_environment

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
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


FAST_PATH = Settings.from_env(
    {"MEMVAULT_FAST_PATH": os.environ.get("MEMVAULT_FAST_PATH", "")}
).fast_path
"""The suite runs with the fast path as ``MEMVAULT_FAST_PATH`` says (CI runs it both ways)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With the fast path off, tests marked ``fast_path`` (they inspect it) are skipped."""
    if FAST_PATH:
        return
    skip = pytest.mark.skip(reason="inspects the fast path, which MEMVAULT_FAST_PATH=off turns off")
    for item in items:
        if item.get_closest_marker("fast_path"):
            item.add_marker(skip)


@pytest.fixture
def fast_path() -> bool:
    """Whether the suite runs with the fast path (``MEMVAULT_FAST_PATH``)."""
    return FAST_PATH


@pytest.fixture
def settings(db: AsyncDatabase[dict[str, Any]], tmp_path: Path) -> Settings:
    """Settings for an app bound to this test's database; no purge task, no key cache; the fast
    path as ``MEMVAULT_FAST_PATH`` says."""
    return Settings(
        database=db.name,
        data_dir=tmp_path,
        purge_interval=0,
        auth_cache_seconds=0,
        fast_path=FAST_PATH,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def http(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process, with the app's lifespan run around it."""
    from memvault.main import create_app

    app = create_app(settings, client=mongo_client)
    async with running(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://memvault.test"
        ) as client:
            yield client


@pytest.fixture
def gql(http: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(http)


@pytest.fixture
def serve_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a served process: its own data directory in ``tmp_path`` (an embedded
    engine of its own) or, when the suite runs on MongoDB, that one and a database of its own."""
    if EXTERNAL_URI is None:
        yield serve_environment(tmp_path / "data")
        return
    database = f"serve_{uuid.uuid4().hex[:12]}"
    yield serve_environment(
        tmp_path / "data", MEMVAULT_MONGODB_URI=EXTERNAL_URI, MEMVAULT_DATABASE=database
    )
    client: MongoClient[dict[str, Any]] = MongoClient(EXTERNAL_URI)
    try:
        client.drop_database(database)
    finally:
        client.close()


@pytest.fixture
def servers(tmp_path: Path, serve_env: dict[str, str]) -> Iterator[Callable[..., LiveServer]]:
    """Makes ``memvault serve`` processes (``serve_env`` unless given an environment), all in one
    working directory; stops every one of them afterwards."""
    made: list[LiveServer] = []

    def make(env: dict[str, str] | None = None, name: str = "serve") -> LiveServer:
        server = LiveServer(env or serve_env, tmp_path / "cwd", name)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.halt()
