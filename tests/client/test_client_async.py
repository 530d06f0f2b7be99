"""The async client (``memvault.client.AsyncMemvaultClient``) against a live server over real TCP:
every method, the ``a``-prefixed names of Zep's older SDK, chunked iteration while a task adds
sessions, a retry after a dropped connection, and API keys."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio

from memvault.client import (
    AlreadyExistsError,
    AsyncMemvaultClient,
    AuthenticationError,
    CreateUserRequest,
    Memory,
    MemvaultConnectionError,
    Message,
    NotFoundError,
    PermissionDeniedError,
    Session,
    SessionPage,
    UpdateUserRequest,
    UserPage,
)
from memvault.db import api_keys
from tests.support.server import DroppingProxy, LiveServer, live_server, uid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from pymongo import AsyncMongoClient


@pytest.fixture(scope="module")
def server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(mongo_uri, tmp_path_factory.mktemp("client-async")) as live:
        yield live


@pytest.fixture
def fresh(mongo_uri: str, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(mongo_uri, tmp_path) as live:
        yield live


@pytest_asyncio.fixture(loop_scope="session")
async def client(server: LiveServer) -> AsyncIterator[AsyncMemvaultClient]:
    async with AsyncMemvaultClient(server.url, backoff=0.01) as memvault:
        yield memvault


async def test_sessions_with_the_old_sdk_names(client: AsyncMemvaultClient) -> None:
    user_id, session_id, other_id = uid("u"), uid("s"), uid("s")
    await client.user.aadd(CreateUserRequest(user_id=user_id))

    created = await client.memory.aadd_session(
        Session(session_id=session_id, user_id=user_id, metadata={"topic": "engines"})
    )
    assert (created.session_id, created.user_id, created.metadata) == (
        session_id,
        user_id,
        {"topic": "engines"},
    )
    assert created.created_at is not None
    assert created.created_at.tzinfo is not None
    assert (await client.memory.add_session(session_id=other_id)).session_id == other_id
    assert await client.memory.aget_session(session_id) == created
    assert await client.memory.get_session(session_id) == created

    merged = await client.memory.aupdate_session(
        Session(session_id=session_id, metadata={"mood": "curious"})
    )
    assert merged.metadata == {"topic": "engines", "mood": "curious"}
    merged = await client.memory.update_session(session_id, metadata={"topic": None})
    assert merged.metadata == {"mood": "curious"}
    with pytest.raises(AlreadyExistsError):
        await client.memory.add_session(Session(session_id=session_id))

    await client.memory.adelete_memory(session_id)
    await client.memory.delete(other_id)
    for gone in (session_id, other_id):
        with pytest.raises(NotFoundError):
            await client.memory.get_session(gone)
    with pytest.raises(NotFoundError):
        await client.memory.delete_memory(session_id)


async def test_messages_with_the_old_sdk_names(client: AsyncMemvaultClient) -> None:
    session_id = uid("s")
    messages = [
        Message(role="Ada", role_type="user", content="How does the engine add?"),
        Message(role_type="assistant", content="With carries.", token_count=3),
        Message(role_type="tool", content="{}", metadata={"tool": "calc"}),
    ]
    stored = await client.memory.add(session_id, messages=messages)
    assert [m.uuid for m in stored.messages] == [m.uuid for m in messages]
    assert all(m.uuid for m in messages)
    assert [m.token_count for m in stored.messages] == [None, 3, None]
    await client.memory.aadd_memory(session_id, Memory(messages=[Message(role="ai", content="4")]))
    await client.memory.add_memory(session_id, Memory(messages=[Message(content="note")]))

    window = await client.memory.get(session_id, lastn=2)
    assert [(m.role_type, m.content) for m in window.messages] == [
        ("assistant", "4"),
        ("norole", "note"),
    ]
    everything = await client.memory.aget_memory(session_id)
    assert [m.seq for m in everything.messages] == [1, 2, 3, 4, 5]
    assert (await client.memory.get_memory(session_id, lastn=1)).messages == everything.messages[4:]
    assert (await client.memory.get_session(session_id)).memory_count == 5

    first_uuid = everything.messages[0].uuid
    assert first_uuid is not None
    updated = await client.memory.update_message_metadata(session_id, first_uuid, {"seen": True})
    assert updated.metadata == {"seen": True}
    with pytest.raises(NotFoundError):
        await client.memory.update_message_metadata(uid("s"), first_uuid, {"seen": False})
    with pytest.raises(NotFoundError):
        await client.memory.get(uid("missing"))


async def test_users_with_the_old_sdk_names(client: AsyncMemvaultClient) -> None:
    user_id, session_id = uid("u"), uid("s")
    user = await client.user.add(
        CreateUserRequest(user_id=user_id, email="ada@example.com", first_name="Ada")
    )
    assert (user.user_id, user.email, user.metadata) == (user_id, "ada@example.com", {})
    assert await client.user.aget(user_id) == user
    assert await client.user.get(user_id) == user
    with pytest.raises(AlreadyExistsError):
        await client.user.add(user_id=user_id)

    updated = await client.user.aupdate(
        UpdateUserRequest(user_id=user_id, last_name="Lovelace", metadata={"plan": "pro"})
    )
    assert (updated.first_name, updated.last_name, updated.metadata) == (
        "Ada",
        "Lovelace",
        {"plan": "pro"},
    )
    assert (await client.user.update(user_id, first_name="Augusta")).first_name == "Augusta"

    await client.memory.add(session_id, [Message(role_type="user", content="hi")], user_id=user_id)
    assert [s.session_id for s in await client.user.get_sessions(user_id)] == [session_id]
    assert [s.session_id for s in await client.user.aget_sessions(user_id)] == [session_id]

    await client.user.adelete(user_id)
    with pytest.raises(NotFoundError):
        await client.user.get(user_id)
    with pytest.raises(NotFoundError):
        await client.user.delete(user_id)
    second = uid("u")
    await client.user.add(user_id=second)
    await client.user.delete(second)
    with pytest.raises(NotFoundError):
        await client.user.aget_sessions(second)


async def test_listings_page_by_cursor(fresh: LiveServer) -> None:
    async with AsyncMemvaultClient(fresh.url, page_size=3) as client:
        for i in range(5):
            await client.user.add(user_id=f"u{i}")
            await client.memory.add_session(session_id=f"s{i}", user_id=f"u{i}")

        sessions = await client.memory.list_sessions(limit=4)
        assert isinstance(sessions, SessionPage)
        assert [s.session_id for s in sessions] == ["s0", "s1", "s2", "s3"]
        rest = await client.memory.alist_sessions(limit=4, cursor=sessions.next_cursor)
        assert [s.session_id for s in rest] == ["s4"]
        assert rest.next_cursor is None

        users = await client.user.list(limit=2)
        assert isinstance(users, UserPage)
        assert [u.user_id for u in users] == ["u0", "u1"]
        more = await client.user.alist(cursor=users.next_cursor)
        assert [u.user_id for u in more] == ["u2", "u3", "u4"]

        chunks = [[u.user_id for u in c] async for c in client.user.list_chunked(chunk_size=2)]
        assert chunks == [["u0", "u1"], ["u2", "u3"], ["u4"]]
        chunks = [[u.user_id for u in c] async for c in client.user.alist_chunked(chunk_size=4)]
        assert chunks == [["u0", "u1", "u2", "u3"], ["u4"]]
        session_chunks = [
            [s.session_id for s in chunk]
            async for chunk in client.memory.alist_all_sessions(chunk_size=5)
        ]
        assert session_chunks == [["s0", "s1", "s2", "s3", "s4"]]


@pytest.mark.slow
async def test_list_all_sessions_while_a_task_adds_sessions(fresh: LiveServer) -> None:
    async with AsyncMemvaultClient(fresh.url) as client:
        gate = asyncio.Semaphore(8)

        async def create(session_id: str) -> str:
            async with gate:
                return (await client.memory.add_session(session_id=session_id)).session_id

        initial = set(await asyncio.gather(*(create(f"a{i:03}") for i in range(250))))
        added: list[str] = []
        stop = asyncio.Event()

        progress = asyncio.Event()

        async def add_meanwhile() -> None:
            while not stop.is_set():
                added.append((await client.memory.add_session(session_id=uid("b"))).session_id)
                progress.set()

        adder = asyncio.create_task(add_meanwhile())
        seen: list[str] = []
        chunks = 0
        try:
            async for chunk in client.memory.list_all_sessions(chunk_size=100):
                chunks += 1
                seen.extend(s.session_id for s in chunk)
                while len(added) < 10 * chunks:  # let the writer get ahead of the reader
                    progress.clear()
                    await progress.wait()
        finally:
            stop.set()
            await adder

    assert chunks >= 3
    assert len(added) >= 30
    assert len(seen) == len(set(seen)), "a session was listed twice"
    assert initial <= set(seen), "a session that existed at the start was skipped"
    assert set(seen) <= initial | set(added)


async def test_add_is_retried_after_a_dropped_connection(server: LiveServer) -> None:
    session_id = uid("s")
    proxy = DroppingProxy(server.port)
    try:
        async with AsyncMemvaultClient(proxy.url, backoff=0.01) as client:
            messages = [Message(role_type="user", content=f"m{i}") for i in range(4)]
            stored = await client.memory.add(session_id, messages=messages)
        # a dropped connection on a call that is not idempotent is reported, not retried
        proxy.drops = 1
        async with AsyncMemvaultClient(proxy.url, backoff=0.01) as client:
            with pytest.raises(MemvaultConnectionError):
                await client.memory.delete(session_id)
    finally:
        proxy.close()
    assert len(proxy.dropped_requests) == 2
    assert proxy.connections == 3
    assert [m.seq for m in stored.messages] == [1, 2, 3, 4]
    rows = server.stored("memories", {"session_id": session_id})
    assert sorted(row["uuid"] for row in rows) == sorted(m.uuid for m in messages)


async def test_transient_failures_are_retried(server: LiveServer) -> None:
    attempts: list[httpx.Request] = []
    unavailable = {"data": None, "errors": [{"message": "down", "extensions": {"code": "SERVICE_UNAVAILABLE"}}]}  # fmt: skip
    user = {"id": "x", "userId": "ada", "email": None, "firstName": None, "lastName": None,
            "metadata": {}, "createdAt": "2025-01-01T00:00:00.000Z", "updatedAt": "2025-01-01T00:00:00.000Z"}  # fmt: skip

    async def handle(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) == 1:
            raise httpx.RemoteProtocolError("dropped", request=request)
        body: dict[str, Any] = unavailable if len(attempts) == 2 else {"data": {"user": user}}
        return httpx.Response(200, content=json.dumps(body).encode())

    transport = httpx.MockTransport(handle)
    async with AsyncMemvaultClient("http://m.test", transport=transport, backoff=0.001) as client:
        assert (await client.user.get("ada")).user_id == "ada"
    assert len(attempts) == 3


async def test_api_keys_and_scopes(
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with live_server(mongo_uri, tmp_path) as keyed:
        database = mongo_client[keyed.database]
        _, read_key = await api_keys.create_key(database, project_id="acme", scope="read")
        _, write_key = await api_keys.create_key(database, project_id="acme", scope="write")

        async with AsyncMemvaultClient(keyed.url) as anonymous:
            with pytest.raises(AuthenticationError) as no_key:
                await anonymous.user.add(user_id="ada")
            assert (no_key.value.status_code, no_key.value.may_have_run) == (401, False)
        async with AsyncMemvaultClient(keyed.url, api_key="mv_wrong") as wrong:
            with pytest.raises(AuthenticationError):
                await wrong.memory.get_session("s")

        async with AsyncMemvaultClient(keyed.url, api_key=read_key) as reader:
            with pytest.raises(PermissionDeniedError) as denied:
                await reader.memory.add_session(session_id="s")
            assert denied.value.error_code == "FORBIDDEN"
            assert "write" in denied.value.message
            with pytest.raises(NotFoundError):
                await reader.memory.get_session("s")

        monkeypatch.setenv("MEMVAULT_API_KEY", write_key)
        async with AsyncMemvaultClient(keyed.url) as writer:  # the key from the environment
            await writer.memory.add_session(session_id="s")
        async with AsyncMemvaultClient(keyed.url, api_key=read_key) as reader:
            assert (await reader.memory.get_session("s")).session_id == "s"


async def test_memory_search(client: AsyncMemvaultClient) -> None:
    session, word = uid("s"), uid("w").replace("-", "")
    await client.memory.add(session, [Message(role_type="user", content=f"the {word} is here")])
    found = await client.memory.search(session, text=f'"the {word}"', limit=3)
    assert [(r.session_id, r.message.content) for r in found] == [(session, f"the {word} is here")]
    assert await client.memory.asearch(session, text=f"{word} -here") == []
