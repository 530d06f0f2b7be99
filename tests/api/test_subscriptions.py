"""Subscriptions over real WebSockets (``graphql-transport-ws``) against ``memvault serve``:
catch-up then live, in order, across reconnects and API processes; session changes; keys,
origins and projects; limits; an engine restart; a slow consumer; SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from memvault.db import api_keys
from tests.support.live import MEMORY_ADDED, SESSION_CHANGED, LiveClient, ws_url
from tests.support.server import embedded_only, engine_pid, live_server, uid, wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from pymongo.asynchronous.database import AsyncDatabase

    from tests.support.server import LiveServer

ADD = """
mutation Add($sessionId: String!, $memories: [MemoryInput!]!) {
  addMemories(input: {sessionId: $sessionId, memories: $memories}) {
    memories { uuid seq content }
  }
}"""


@pytest.fixture(scope="module")
def server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module's tests; they keep apart by unique session ids."""
    with live_server(mongo_uri, tmp_path_factory.mktemp("live")) as live:
        yield live


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        yield client


async def gql(
    http: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    key: str | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    body: dict[str, Any] = response.json()
    assert not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data


async def add(
    http: httpx.AsyncClient, session_id: str, *contents: str, key: str | None = None
) -> list[dict[str, Any]]:
    """Append one memory per content; the stored memories."""
    memories = [{"roleType": "USER", "content": text} for text in contents]
    data = await gql(http, ADD, {"sessionId": session_id, "memories": memories}, key=key)
    stored: list[dict[str, Any]] = data["addMemories"]["memories"]
    return stored


def contents(memories: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in memories]


async def test_stored_memories_then_live_ones_in_seq_order(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    session = uid("s")
    stored = await add(http, session, "one", "two", "three", "four")
    async with LiveClient.connect(server.url) as live:
        sub = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 1})
        first = await live.memories(sub, 3)
        assert first == stored[1:]  # uuid, seq and content as the mutation answered them
        later = await add(http, session, "five", "six")
        assert await live.memories(sub, 2) == later
        assert [m["seq"] for m in first + later] == [2, 3, 4, 5, 6]
        assert await live.silent(sub)


async def test_without_after_seq_only_new_memories_come(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    session = uid("s")
    await add(http, session, "before")
    async with LiveClient.connect(server.url) as live:
        sub = await live.subscribe(MEMORY_ADDED, {"sessionId": session})
        assert await live.silent(sub, 0.3)
        await add(http, session, "after")
        assert contents(await live.memories(sub, 1)) == ["after"]


async def test_every_field_of_a_memory_resolves_as_in_a_query(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    session = uid("s")
    selection = """
      id uuid seq role roleType content metadata tokenCount createdAt updatedAt
      session { id sessionId userId metadata memoryCount user { userId }
                memories(last: 2) { edges { node { seq content } } } }
    """
    await gql(
        http,
        "mutation($s: String!) { addMemories(input: {sessionId: $s, memories: [{roleType: ASSISTANT,"
        ' role: "bot", content: "hi", metadata: {a: [1, {b: null}]}, tokenCount: 3}]}) {'
        " session { sessionId } } }",
        {"s": session},
    )
    async with LiveClient.connect(server.url) as live:
        sub = await live.subscribe(
            f"subscription($s: String!) {{ memoryAdded(sessionId: $s, afterSeq: 0) {{ {selection} }} }}",
            {"s": session},
        )
        event = (await live.data(sub))["memoryAdded"]
    queried = await gql(
        http,
        f"query($s: String!) {{ session(sessionId: $s) {{ memories(first: 1) {{ edges {{ node {{ {selection} }} }} }} }} }}",
        {"s": session},
    )
    assert event == queried["session"]["memories"]["edges"][0]["node"]
    assert event["session"]["memoryCount"] == 1


async def test_racing_writers_are_delivered_once_each_in_seq_order(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    session = uid("s")
    await add(http, session, "start")
    async with LiveClient.connect(server.url) as live:
        sub = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
        writers = [add(http, session, *(f"w{w}-{n}" for n in range(5))) for w in range(8)]
        for _ in range(4):
            await asyncio.gather(*writers[:2])
            writers = writers[2:]
        got = await live.memories(sub, 41)
        assert [m["seq"] for m in got] == list(range(1, 42))
        assert len({m["uuid"] for m in got}) == 41
        assert await live.silent(sub)


async def test_a_reconnect_with_after_seq_misses_and_repeats_nothing(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    session = uid("s")
    await add(http, session, "a", "b")
    async with LiveClient.connect(server.url) as live:
        sub = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
        seen = await live.memories(sub, 2)
    await add(http, session, "c", "d")  # while disconnected
    async with LiveClient.connect(server.url) as live:
        sub = await live.subscribe(
            MEMORY_ADDED, {"sessionId": session, "afterSeq": seen[-1]["seq"]}
        )
        await add(http, session, "e")
        assert contents(await live.memories(sub, 3)) == ["c", "d", "e"]
        assert await live.silent(sub)


async def test_deleted_memories_are_skipped(server: LiveServer, http: httpx.AsyncClient) -> None:
    session = uid("s")
    stored = await add(http, session, "keep", "drop", "keep too")
    await gql(
        http,
        "mutation($u: String!) { deleteMemory(uuid: $u) { deleted } }",
        {"u": stored[1]["uuid"]},
    )
    async with LiveClient.connect(server.url) as live:
        sub = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
        assert contents(await live.memories(sub, 2)) == ["keep", "keep too"]
        assert await live.silent(sub)


async def test_writes_through_another_api_process_are_delivered(
    server: LiveServer, mongo_uri: str, tmp_path: Path
) -> None:
    session = uid("s")
    with live_server(mongo_uri, tmp_path, MEMVAULT_DATABASE=server.database) as other:
        async with (
            LiveClient.connect(server.url) as live,
            httpx.AsyncClient(base_url=other.url, timeout=20) as other_http,
        ):
            await add(other_http, session, "first")
            sub = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
            await add(other_http, session, "second", "third")
            assert contents(await live.memories(sub, 3)) == ["first", "second", "third"]


async def test_session_changes_and_the_memory_stream_through_delete_and_revival(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    session = uid("s")
    await add(http, session, "hello")
    async with LiveClient.connect(server.url) as live:
        changes = await live.subscribe(SESSION_CHANGED, {"sessionId": session})
        memories = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 1})
        await add(http, session, "more")  # memoryCount changes: no session change
        assert contents(await live.memories(memories, 1)) == ["more"]
        update = 'mutation($s: String!) { updateSession(input: {sessionId: $s, metadata: {topic: "x"}}) { sessionId } }'
        await gql(http, update, {"s": session})
        changed = (await live.data(changes))["sessionChanged"]
        assert changed == {
            "kind": "UPDATED",
            "session": {"sessionId": session, "userId": None, "metadata": {"topic": "x"}},
        }
        await gql(
            http,
            "mutation($s: String!) { deleteSession(sessionId: $s) { deleted } }",
            {"s": session},
        )
        assert (await live.data(changes))["sessionChanged"]["kind"] == "DELETED"
        await gql(
            http,
            "mutation($s: String!) { restoreSession(sessionId: $s) { sessionId } }",
            {"s": session},
        )
        assert (await live.data(changes))["sessionChanged"]["kind"] == "RESTORED"
        await gql(
            http,
            "mutation($s: String!) { deleteSession(sessionId: $s) { deleted } }",
            {"s": session},
        )
        assert (await live.data(changes))["sessionChanged"]["kind"] == "DELETED"
        await add(http, session, "revived")  # addMemories revives the session
        assert (await live.data(changes))["sessionChanged"]["kind"] == "RESTORED"
        assert contents(await live.memories(memories, 1)) == ["revived"]
        assert await live.silent(changes, 0.3)


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"sessionId": "no-such-session"}, "NOT_FOUND"),
        ({"sessionId": "s", "afterSeq": -1}, "BAD_USER_INPUT"),
        ({"sessionId": ""}, "BAD_USER_INPUT"),
        ({"sessionId": "a\u0000b"}, "BAD_USER_INPUT"),
    ],
)
async def test_bad_subscriptions_get_an_error_message_with_its_code(
    server: LiveServer, variables: dict[str, Any], code: str
) -> None:
    async with LiveClient.connect(server.url) as live:
        sub = await live.subscribe(MEMORY_ADDED, variables)
        message = await live.message(sub)
        assert message["type"] == "error", message
        assert [e["extensions"]["code"] for e in message["payload"]] == [code]
        # the connection stays usable
        sub = await live.subscribe("{ __typename }")
        assert (await live.data(sub)) == {"__typename": "Query"}


async def test_documents_over_the_limits_are_refused(server: LiveServer) -> None:
    deep = (
        'subscription { memoryAdded(sessionId: "s") { session { '
        + "memories { edges { node { session { " * 4
        + "sessionId"
        + " } } } }" * 4
        + " } } }"
    )
    async with LiveClient.connect(server.url) as live:
        sub = await live.subscribe(deep)
        message = await live.message(sub)
        assert message["type"] == "error", message
        assert message["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_only_the_graphql_transport_ws_protocol_is_spoken(server: LiveServer) -> None:
    async with websockets.connect(ws_url(server.url), subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4406


async def test_pings_are_answered(server: LiveServer) -> None:
    async with LiveClient.connect(server.url) as live:
        await live.send({"type": "ping"})
        assert (await asyncio.wait_for(live.others.get(), 5)) == {"type": "pong"}
        await live.ws.ping()  # and WebSocket pings (the library waits for the pong)


async def test_an_origin_not_allowed_cannot_open_a_websocket(
    mongo_uri: str, tmp_path: Path
) -> None:
    with live_server(
        mongo_uri, tmp_path, MEMVAULT_CORS_ORIGINS="https://chat.example.com"
    ) as served:
        with pytest.raises(InvalidStatus) as refused:
            async with LiveClient.connect(served.url, origin="https://evil.example.net"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        async with LiveClient.connect(served.url, origin="https://chat.example.com") as live:  # type: ignore[arg-type]
            sub = await live.subscribe("{ __typename }")
            assert await live.data(sub) == {"__typename": "Query"}


@pytest.fixture
async def keyed(
    mongo_uri: str, tmp_path: Path, db: AsyncDatabase[dict[str, Any]]
) -> AsyncIterator[tuple[LiveServer, dict[str, str]]]:
    """A server on ``db`` with keys of two projects."""
    _, acme = await api_keys.create_key(db, project_id="acme", scope="write")
    _, other = await api_keys.create_key(db, project_id="other", scope="write")
    with live_server(mongo_uri, tmp_path, MEMVAULT_DATABASE=db.name) as served:
        yield served, {"acme": acme, "other": other}


async def test_keys_are_checked_at_connection_init(
    keyed: tuple[LiveServer, dict[str, str]],
) -> None:
    served, keys = keyed
    for payload, code in [({}, 4401), ({"authorization": "Bearer mv_wrong"}, 4403)]:
        async with LiveClient.connect(served.url, init=False) as live:
            await live.send({"type": "connection_init", "payload": payload})
            assert (await live.close_code())[0] == code
    async with LiveClient.connect(
        served.url, payload={"authorization": f"Bearer {keys['acme']}"}
    ) as live:
        sub = await live.subscribe("{ __typename }")
        assert await live.data(sub) == {"__typename": "Query"}
    async with LiveClient.connect(
        served.url, headers={"Authorization": f"Bearer {keys['acme']}"}
    ) as live:  # or the upgrade's header
        sub = await live.subscribe("{ __typename }")
        assert await live.data(sub) == {"__typename": "Query"}


async def test_a_subscriber_sees_only_its_own_project(
    keyed: tuple[LiveServer, dict[str, str]],
) -> None:
    served, keys = keyed
    session = uid("s")
    async with httpx.AsyncClient(base_url=served.url, timeout=20) as http:
        await add(http, session, "acme's", key=keys["acme"])
        async with LiveClient.connect(
            served.url, payload={"authorization": f"Bearer {keys['other']}"}
        ) as other:
            sub = await other.subscribe(MEMORY_ADDED, {"sessionId": session})
            refused = await other.message(sub)
            assert refused["type"] == "error"
            assert refused["payload"][0]["extensions"]["code"] == "NOT_FOUND"
            await add(http, session, "other's", key=keys["other"])  # the same id in "other"
            sub = await other.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
            await add(http, session, "acme's again", key=keys["acme"])
            assert contents(await other.memories(sub, 1)) == ["other's"]
            assert await other.silent(sub)


async def test_subscriptions_per_connection_are_limited(mongo_uri: str, tmp_path: Path) -> None:
    with live_server(mongo_uri, tmp_path, MEMVAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION="2") as served:
        async with httpx.AsyncClient(base_url=served.url) as http:
            session = uid("s")
            await add(http, session, "x")
        async with LiveClient.connect(served.url) as live:
            first = await live.subscribe(MEMORY_ADDED, {"sessionId": session})
            await live.subscribe(SESSION_CHANGED, {"sessionId": session})
            third = await live.subscribe(MEMORY_ADDED, {"sessionId": session})
            refused = await live.message(third)
            assert refused["type"] == "error"
            assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
            await live.complete(first)
            await asyncio.sleep(0.2)
            fourth = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
            assert contents(await live.memories(fourth, 1)) == ["x"]


@pytest.mark.slow
async def test_a_slow_consumer_is_closed_and_others_go_on(mongo_uri: str, tmp_path: Path) -> None:
    with live_server(mongo_uri, tmp_path, MEMVAULT_SUBSCRIPTION_QUEUE_LIMIT="20") as served:
        session = uid("s")
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            await add(http, session, "start")
            async with (
                LiveClient.connect(served.url, read=False, max_queue=1) as slow,
                LiveClient.connect(served.url) as fast,
            ):
                await slow.send(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": MEMORY_ADDED, "variables": {"sessionId": session}},
                    }
                )
                sub = await fast.subscribe(MEMORY_ADDED, {"sessionId": session})
                rss_before = served.rss_mb()
                for n in range(40):  # ~40 MB (incompressible) to a client that reads nothing
                    await add(http, session, *(f"{n}-{i}-{_noise(50_000)}" for i in range(20)))
                    assert len(await fast.memories(sub, 20)) == 20
                code, reason = await slow.close_code(wait=30)
                assert code == 1013
                assert "too slow" in reason
                assert served.rss_mb() - rss_before < 150  # not the ~50 MB times its copies
                await add(http, session, "after")
                assert contents(await fast.memories(sub, 1)) == ["after"]


@embedded_only
@pytest.mark.slow
async def test_an_engine_restart_loses_nothing(
    servers: Callable[..., LiveServer],
) -> None:
    served = servers().start()
    session = uid("s")
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        await add(http, session, "before")
        async with LiveClient.connect(served.url) as live:
            sub = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
            assert contents(await live.memories(sub, 1)) == ["before"]
            old = engine_pid(served.data_dir)
            os.kill(old, signal.SIGKILL)
            assert await asyncio.to_thread(wait_for, lambda: _restarted(served, old), 30)
            written: list[str] = []
            for n in range(5):
                for _ in range(100):  # until the restarted engine answers
                    response = await http.post(
                        "/graphql",
                        json={
                            "query": ADD,
                            "variables": {
                                "sessionId": session,
                                "memories": [{"roleType": "USER", "content": f"after {n}"}],
                            },
                        },
                    )
                    if not response.json().get("errors"):
                        written.append(f"after {n}")
                        break
                    await asyncio.sleep(0.2)
            assert written == [f"after {n}" for n in range(5)]
            assert contents(await live.memories(sub, 5)) == written
            assert await live.silent(sub)


def _noise(size: int) -> str:
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()


def _restarted(served: LiveServer, old: int) -> bool:
    try:
        return engine_pid(served.data_dir) != old
    except FileNotFoundError:  # between the two
        return False


async def test_sigterm_closes_subscriptions_with_a_reconnect_code(
    servers: Callable[..., LiveServer], serve_env: dict[str, str]
) -> None:
    served = servers().start()
    async with httpx.AsyncClient(base_url=served.url) as http:
        session = uid("s")
        await add(http, session, "x")
    async with LiveClient.connect(served.url) as live:
        await live.subscribe(MEMORY_ADDED, {"sessionId": session})
        served.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        code, _ = await live.close_code(wait=15)
        assert code == 1012  # service restart: graphql-ws and browsers reconnect
    assert served.wait_exit(15) == 0


def test_the_readme_subscriptions_validate() -> None:
    from graphql import parse, validate

    from memvault.schema import _upstream, schema
    from tests.support.readme import fenced, section

    (block,) = fenced("graphql subscriptions", section("Live updates"))
    document = parse(block)
    assert validate(_upstream.graphql_schema(schema), document) == []
    assert [d.operation.value for d in document.definitions] == ["subscription"] * 2  # type: ignore[attr-defined]


async def test_the_readme_python_example_follows_a_session(
    server: LiveServer, http: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.readme import fenced, section

    (example,) = fenced("python", section("Live updates"))
    code = example.replace("ws://127.0.0.1:8000", ws_url(server.url).removesuffix("/graphql"))
    code, run = code.rsplit("asyncio.run(", 1)
    assert run.startswith('follow("s-1"))')
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the README's own example
    session = uid("s")
    await add(http, session, "stored")
    following = asyncio.create_task(namespace["follow"](session))
    printed = ""
    for _ in range(200):
        printed += capsys.readouterr().out
        if "'stored'" in printed:
            break
        await asyncio.sleep(0.05)
    await add(http, session, "live")
    for _ in range(200):
        printed += capsys.readouterr().out
        if "'live'" in printed:
            break
        await asyncio.sleep(0.05)
    following.cancel()
    assert printed.splitlines() == [
        "{'seq': 1, 'roleType': 'USER', 'content': 'stored'}",
        "{'seq': 2, 'roleType': 'USER', 'content': 'live'}",
    ]
