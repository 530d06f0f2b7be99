"""``/graphql`` over WebSocket against hostile or sloppy clients: messages that are not what
``graphql-transport-ws`` allows close the connection with 4400 and a reason, documents that do
not parse are error messages as over HTTP, queries and mutations stop at the request timeout as
over HTTP, and ``connection_init`` always checks the key."""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from memvault.db import api_keys
from tests.support.live import MEMORY_ADDED, LiveClient
from tests.support.server import embedded_only, engine_pid, live_server, uid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from pymongo.asynchronous.database import AsyncDatabase

    from tests.support.server import LiveServer

MAX_QUERY_BYTES = 2048
ADD = """
mutation Add($sessionId: String!) {
  addMemories(input: {sessionId: $sessionId, memories: [{roleType: USER, content: "hi"}]}) {
    memories { seq }
  }
}"""


@pytest.fixture(scope="module")
def server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(
        mongo_uri,
        tmp_path_factory.mktemp("hostile"),
        MEMVAULT_MAX_QUERY_BYTES=str(MAX_QUERY_BYTES),
    ) as live:
        yield live


async def closed_by(server: LiveServer, raw: str) -> tuple[int | None, str]:
    """The close code and reason after sending ``raw`` on an initialised connection."""
    async with LiveClient.connect(server.url) as live:
        await live.ws.send(raw)
        return await live.close_code()


@pytest.mark.parametrize("raw", ["[1, 2]", "5", '"subscribe"', "null"])
async def test_a_message_that_is_not_an_object_closes_with_4400(
    server: LiveServer, raw: str
) -> None:
    code, reason = await closed_by(server, raw)
    assert code == 4400
    assert "object" in reason


@pytest.mark.parametrize(
    "payload",
    [
        "{ __typename }",
        {"query": 5},
        {"query": ["{ __typename }"]},
        {"query": "{ __typename }", "variables": [1]},
        {"query": "{ __typename }", "variables": "x"},
        {"query": "{ __typename }", "operationName": 5},
    ],
)
async def test_a_malformed_subscribe_closes_with_4400(server: LiveServer, payload: Any) -> None:
    message = {"id": "1", "type": "subscribe", "payload": payload}
    code, reason = await closed_by(server, json.dumps(message))
    assert (code, reason.split(":")[0]) == (4400, "Invalid subscribe message")


async def test_an_operation_id_must_be_a_string(server: LiveServer) -> None:
    message = {"id": 5, "type": "subscribe", "payload": {"query": "{ __typename }"}}
    code, reason = await closed_by(server, json.dumps(message))
    assert (code, reason.split(":")[0]) == (4400, "Invalid subscribe message")


@pytest.mark.parametrize(
    "query",
    [
        "{",
        "{ __typename }" + " " * MAX_QUERY_BYTES,
        "{ __typename \ud800 }",
    ],
    ids=["syntax", "too-large", "lone-surrogate"],
)
async def test_a_document_that_does_not_parse_is_an_error_message(
    server: LiveServer, query: str
) -> None:
    async with LiveClient.connect(server.url) as live:
        refused = await live.message(await live.subscribe(query))
        assert refused["type"] == "error", refused
        assert refused["payload"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
        sub = await live.subscribe("{ __typename }")  # the connection goes on
        assert await live.data(sub) == {"__typename": "Query"}


async def test_several_operations_need_an_operation_name(server: LiveServer) -> None:
    async with LiveClient.connect(server.url) as live:
        refused = await live.message(
            await live.subscribe("query A { a: __typename } query B { b: __typename }")
        )
        assert refused["type"] == "error", refused
        assert refused["payload"][0]["message"].startswith("Must provide operation name")
        assert refused["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


@pytest.fixture
async def keyed(
    mongo_uri: str, tmp_path: Path, db: AsyncDatabase[dict[str, Any]]
) -> AsyncIterator[tuple[LiveServer, str]]:
    """A server on ``db`` where keys exist; a write key of project ``acme``."""
    _, key = await api_keys.create_key(db, project_id="acme", scope="write")
    with live_server(mongo_uri, tmp_path, MEMVAULT_DATABASE=db.name) as served:
        yield served, key


async def test_connection_init_without_a_payload_checks_the_key(
    keyed: tuple[LiveServer, str],
) -> None:
    served, key = keyed
    async with LiveClient.connect(served.url, init=False) as live:
        await live.send({"type": "connection_init"})
        assert (await live.close_code())[0] == 4401
    session = uid("s")
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=served.url, timeout=20, headers=headers) as http:
        added = await http.post(
            "/graphql", json={"query": ADD, "variables": {"sessionId": session}}
        )
        assert not added.json().get("errors"), added.text
    async with LiveClient.connect(served.url, init=False, headers=headers) as live:
        await live.send({"type": "connection_init"})  # the key in the upgrade's header
        assert (await live.others.get())["type"] == "connection_ack"
        sub = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
        assert (await live.data(sub))["memoryAdded"]["seq"] == 1


@embedded_only
async def test_queries_over_a_websocket_stop_at_the_request_timeout(
    servers: Callable[..., LiveServer], serve_env: dict[str, str]
) -> None:
    """As over HTTP: a query stuck on a stalled database is stopped at MEMVAULT_REQUEST_TIMEOUT
    (before its database read gives up by itself), and the connection goes on."""
    served = servers({**serve_env, "MEMVAULT_REQUEST_TIMEOUT": "0.5"}).start()
    async with LiveClient.connect(served.url) as live:
        engine = engine_pid(served.data_dir)
        os.kill(engine, signal.SIGSTOP)
        try:
            stopped = await live.message(
                await live.subscribe("{ sessions(first: 1) { nodes { sessionId } } }")
            )
        finally:
            os.kill(engine, signal.SIGCONT)
        assert stopped["type"] == "error", stopped
        assert stopped["payload"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert "MEMVAULT_REQUEST_TIMEOUT" in stopped["payload"][0]["message"]
        sub = await live.subscribe("{ __typename }")
        assert await live.data(sub) == {"__typename": "Query"}
