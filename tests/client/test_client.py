"""The sync client (``memvault.client.MemvaultClient``) against a live server over real TCP.

Every method is exercised against the real application on the test run's database server; retry
behaviour against a proxy that drops a connection after the server did the work, and against
scripted failures (``httpx.MockTransport``).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from memvault.client import (
    ROLE_TYPES,
    AlreadyExistsError,
    APIError,
    AsyncMemvaultClient,
    BadRequestError,
    ConflictError,
    CreateUserRequest,
    Memory,
    MemorySearchResult,
    MemvaultClient,
    MemvaultClientError,
    MemvaultConnectionError,
    Message,
    NotFoundError,
    ServiceUnavailableError,
    Session,
    SessionPage,
    UpdateUserRequest,
    User,
)
from memvault.db.engine import free_port
from tests.support.readme import fenced, section
from tests.support.server import DroppingProxy, LiveServer, live_server, uid

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture(scope="module")
def server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module's tests; they keep apart by unique ids."""
    with live_server(mongo_uri, tmp_path_factory.mktemp("client")) as live:
        yield live


@pytest.fixture
def fresh(mongo_uri: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A server of the test's own, on an empty database: for listings of everything."""
    with live_server(mongo_uri, tmp_path) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[MemvaultClient]:
    with MemvaultClient(server.url, backoff=0.01) as memvault:
        yield memvault


def is_utc(value: datetime | None) -> bool:
    return value is not None and value.utcoffset() == timedelta(0)


def test_both_clients_and_the_models_import_from_the_package() -> None:
    import memvault.client

    for name in ("MemvaultClient", "AsyncMemvaultClient", "Session", "User", "Message"):
        assert name in memvault.client.__all__
    assert {"CreateUserRequest", "UpdateUserRequest", "Memory"} <= set(memvault.client.__all__)
    assert APIError is MemvaultClientError
    assert AsyncMemvaultClient is not MemvaultClient


def test_sessions_are_added_read_merged_and_deleted(client: MemvaultClient) -> None:
    user_id, session_id, other_id = uid("u"), uid("s"), uid("s")
    client.user.add(CreateUserRequest(user_id=user_id))

    created = client.memory.add_session(
        Session(
            session_id=session_id, user_id=user_id, metadata={"topic": "engines", "p": {"a": 1}}
        )
    )
    assert isinstance(created, Session)
    assert (created.session_id, created.user_id, created.memory_count) == (session_id, user_id, 0)
    assert created.metadata == {"topic": "engines", "p": {"a": 1}}
    assert is_utc(created.created_at)
    assert is_utc(created.updated_at)
    assert created.created_at is not None
    assert abs(datetime.now(UTC) - created.created_at) < timedelta(minutes=5)
    assert created.id

    by_keywords = client.memory.add_session(session_id=other_id, metadata={"k": 1})
    assert (by_keywords.session_id, by_keywords.user_id, by_keywords.metadata) == (
        other_id,
        None,
        {"k": 1},
    )
    assert client.memory.get_session(session_id) == created

    # Zep's shape: a Session whose metadata is merged in (JSON Merge Patch: None removes a key)
    merged = client.memory.update_session(
        Session(session_id=session_id, metadata={"mood": "curious", "p": {"a": None, "b": 2}})
    )
    assert merged.metadata == {"topic": "engines", "p": {"b": 2}, "mood": "curious"}
    assert merged.updated_at is not None
    assert created.updated_at is not None
    assert merged.updated_at >= created.updated_at
    # ... and the newer one: an id and the metadata
    assert client.memory.update_session(session_id, metadata={"topic": None}).metadata == {
        "p": {"b": 2},
        "mood": "curious",
    }
    assert client.memory.update_session(session_id=session_id, metadata={"x": 1}).metadata == {
        "p": {"b": 2},
        "mood": "curious",
        "x": 1,
    }

    with pytest.raises(AlreadyExistsError) as exists:
        client.memory.add_session(Session(session_id=session_id))
    assert isinstance(exists.value, ConflictError)
    assert exists.value.error_code == "ALREADY_EXISTS"
    assert session_id in exists.value.message

    with pytest.raises(NotFoundError) as no_user:
        client.memory.add_session(session_id=uid("s"), user_id=uid("nobody"))
    assert no_user.value.field == "userId"

    assert client.memory.delete(session_id) is None
    with pytest.raises(NotFoundError):
        client.memory.get_session(session_id)
    with pytest.raises(NotFoundError) as again:
        client.memory.delete(session_id)  # deleting what is deleted: NOT_FOUND, as documented
    assert again.value.field == "sessionId"
    with pytest.raises(NotFoundError):
        client.memory.update_session(session_id, metadata={"x": 2})

    client.memory.delete_memory(other_id)  # Zep's older name
    with pytest.raises(NotFoundError):
        client.memory.get_session(other_id)
    # a deleted id may be used again: the session starts fresh
    assert client.memory.add_session(Session(session_id=session_id)).metadata == {}


def test_session_arguments_are_checked_before_anything_is_sent(client: MemvaultClient) -> None:
    with pytest.raises(ValueError, match="session_id"):
        client.memory.add_session(Session(session_id=" "))
    with pytest.raises(ValueError, match="session_id"):
        client.memory.get_session("")
    with pytest.raises(TypeError):
        client.memory.add_session(Session(session_id="a"), metadata={"b": 1})
    with pytest.raises(ValueError, match="role_type"):
        Message(role_type="robot", content="beep")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lastn"):
        client.memory.get(uid("s"), lastn=-1)
    with pytest.raises(ValueError, match="chunk_size"):
        client.memory.list_all_sessions(chunk_size=0)


def test_messages_are_added_with_client_uuids_and_read_back_oldest_first(
    client: MemvaultClient,
) -> None:
    session_id = uid("s")
    messages = [
        Message(role="Ada", role_type=role_type, content=f"message {i}", metadata={"i": i})
        for i, role_type in enumerate(ROLE_TYPES)
    ]
    stored = client.memory.add(session_id, messages=messages)

    assert all(m.uuid for m in messages)  # assigned onto the caller's messages, before sending
    assert isinstance(stored, Memory)
    assert [m.uuid for m in stored.messages] == [m.uuid for m in messages]
    assert [m.role_type for m in stored.messages] == list(ROLE_TYPES)
    assert [m.seq for m in stored.messages] == [1, 2, 3, 4, 5, 6]
    assert stored.messages[2].metadata == {"i": 2}
    assert stored.messages[0].role == "Ada"
    assert all(is_utc(m.created_at) for m in stored.messages)

    window = client.memory.get(session_id, lastn=3)
    assert [m.content for m in window.messages] == ["message 3", "message 4", "message 5"]
    assert [m.content for m in client.memory.get(session_id).messages] == [
        f"message {i}" for i in range(6)
    ]
    assert client.memory.get(session_id, lastn=0).messages == []
    assert client.memory.get(session_id, lastn=50).messages == stored.messages

    # the caller sends the same messages again (their own retry): nothing is stored twice
    again = client.memory.add(session_id, messages=messages)
    assert [m.seq for m in again.messages] == [1, 2, 3, 4, 5, 6]
    assert client.memory.get_session(session_id).memory_count == 6

    # Zep's older call (a Memory), a role type read from the role, a message as a dict
    client.memory.add_memory(session_id, Memory(messages=[Message(role="human", content="hi")]))
    client.memory.add(session_id, messages=[{"role_type": "ASSISTANT", "content": "hello"}])
    tail = client.memory.get_memory(session_id, lastn=2).messages
    assert [(m.role_type, m.content, m.seq) for m in tail] == [
        ("user", "hi", 7),
        ("assistant", "hello", 8),
    ]

    with pytest.raises(NotFoundError) as missing:
        client.memory.get(uid("missing"), lastn=5)
    assert missing.value.field == "sessionId"


def test_add_attaches_the_session_to_a_user(client: MemvaultClient) -> None:
    user_id, session_id = uid("u"), uid("s")
    client.user.add(user_id=user_id)
    client.memory.add(session_id, [Message(role_type="user", content="hi")], user_id=user_id)
    assert client.memory.get_session(session_id).user_id == user_id
    assert [s.session_id for s in client.user.get_sessions(user_id)] == [session_id]


def test_get_reads_a_window_longer_than_a_page(server: LiveServer) -> None:
    session_id = uid("s")
    with MemvaultClient(server.url, page_size=7) as client:
        client.memory.add(
            session_id, [Message(role_type="user", content=f"m{i}") for i in range(20)]
        )
        assert [m.content for m in client.memory.get(session_id, lastn=15).messages] == [
            f"m{i}" for i in range(5, 20)
        ]
        everything = client.memory.get(session_id).messages
        assert [m.seq for m in everything] == list(range(1, 21))


def test_update_message_metadata_merges_within_the_session(client: MemvaultClient) -> None:
    session_id, other_id = uid("s"), uid("s")
    stored = client.memory.add(
        session_id, [Message(role_type="user", content="x", metadata={"a": 1, "b": {"c": 1}})]
    )
    client.memory.add(other_id, [Message(role_type="user", content="y")])
    message_uuid = stored.messages[0].uuid
    assert message_uuid is not None

    updated = client.memory.update_message_metadata(
        session_id, message_uuid, {"b": {"d": 2}, "a": None}
    )
    assert isinstance(updated, Message)
    assert (updated.uuid, updated.metadata) == (message_uuid, {"b": {"c": 1, "d": 2}})
    again = client.memory.update_message_metadata(
        session_id, message_uuid=message_uuid, metadata={"z": True}
    )
    assert again.metadata == {"b": {"c": 1, "d": 2}, "z": True}

    with pytest.raises(NotFoundError):  # the message is not in that session: nothing changes
        client.memory.update_message_metadata(other_id, message_uuid, {"z": False})
    with pytest.raises(NotFoundError):
        client.memory.update_message_metadata(session_id, uid("nope"), {"z": False})
    assert client.memory.get(session_id).messages[0].metadata == again.metadata


def test_users_are_added_read_updated_listed_by_session_and_deleted(
    client: MemvaultClient,
) -> None:
    user_id, other_id = uid("u"), uid("u")
    user = client.user.add(
        CreateUserRequest(
            user_id=user_id, email="ada@example.com", first_name="Ada", metadata={"plan": "pro"}
        )
    )
    assert isinstance(user, User)
    assert (user.user_id, user.email, user.first_name, user.last_name) == (
        user_id,
        "ada@example.com",
        "Ada",
        None,
    )
    assert user.metadata == {"plan": "pro"}
    assert is_utc(user.created_at)
    assert client.user.add(user_id=other_id, first_name="Grace").first_name == "Grace"
    with pytest.raises(AlreadyExistsError):
        client.user.add(CreateUserRequest(user_id=user_id))
    assert client.user.get(user_id) == user

    updated = client.user.update(
        UpdateUserRequest(
            user_id=user_id, last_name="Lovelace", metadata={"plan": None, "tz": "UTC"}
        )
    )
    assert (updated.email, updated.first_name, updated.last_name) == (
        "ada@example.com",
        "Ada",
        "Lovelace",
    )
    assert updated.metadata == {"tz": "UTC"}
    assert client.user.update(user_id, email="ada@lovelace.org").email == "ada@lovelace.org"

    first, second = uid("s"), uid("s")
    client.memory.add_session(Session(session_id=first, user_id=user_id))
    client.memory.add_session(Session(session_id=uid("s"), user_id=other_id))
    client.memory.add_session(session_id=second, user_id=user_id)
    sessions = client.user.get_sessions(user_id)
    assert [s.session_id for s in sessions] == [first, second]
    assert all(isinstance(s, Session) and s.user_id == user_id for s in sessions)

    assert client.user.delete(user_id) is None
    with pytest.raises(NotFoundError):
        client.user.get(user_id)
    with pytest.raises(NotFoundError):
        client.user.get_sessions(user_id)
    with pytest.raises(NotFoundError):  # a user's deletion takes their sessions
        client.memory.get_session(first)
    with pytest.raises(NotFoundError):
        client.user.delete(user_id)
    with pytest.raises(NotFoundError):
        client.user.update(UpdateUserRequest(user_id=user_id, email="x@example.com"))
    with pytest.raises(TypeError):
        client.user.add(CreateUserRequest(user_id=uid("u")), email="x@example.com")
    with pytest.raises(ValueError, match="user_id"):
        client.user.add(email="x@example.com")


def test_errors_carry_the_server_code_message_and_field(client: MemvaultClient) -> None:
    with pytest.raises(BadRequestError) as bad:
        client.memory.add_session(session_id=uid("s"), metadata={"$where": 1})
    error = bad.value
    assert error.error_code == "BAD_USER_INPUT"
    assert error.field is not None
    assert error.field.startswith("metadata")
    assert "$" in error.message
    assert error.message in str(error)
    assert (error.status_code, error.attempts) == (200, 1)
    assert error.errors
    assert error.errors[0]["extensions"]["code"] == "BAD_USER_INPUT"

    taken = client.memory.add(uid("s"), [Message(role_type="user", content="mine")])
    stolen = Message(uuid=taken.messages[0].uuid, role_type="user", content="theirs")
    with pytest.raises(ConflictError) as conflict:
        client.memory.add(uid("s"), [stolen])
    assert conflict.value.error_code == "CONFLICT"

    with pytest.raises(BadRequestError, match="cursor"):
        client.memory.list_sessions(cursor="not-a-cursor")
    with pytest.raises(BadRequestError):
        client.memory.add(uid("s"), [])


def test_list_sessions_pages_by_opaque_cursor(fresh: LiveServer) -> None:
    with MemvaultClient(fresh.url, page_size=4) as client:
        for i in range(10):
            client.memory.add_session(session_id=f"s{i:02}")
        page = client.memory.list_sessions(limit=6)  # two server pages of 4 and 2
        assert isinstance(page, SessionPage)
        assert [s.session_id for s in page] == [f"s{i:02}" for i in range(6)]
        assert (len(page), page[0].session_id, page.sessions is page.items) == (6, "s00", True)
        assert page.has_next_page
        assert page.next_cursor is not None
        assert not page.next_cursor.isdigit()  # a keyset cursor, not an offset

        rest = client.memory.list_sessions(limit=6, cursor=page.next_cursor)
        assert [s.session_id for s in rest] == [f"s{i:02}" for i in range(6, 10)]
        assert rest.next_cursor is None
        assert rest.end_cursor is not None

        client.memory.add_session(session_id="s10")
        newer = client.memory.list_sessions(cursor=rest.end_cursor)  # what came since
        assert [s.session_id for s in newer] == ["s10"]
        assert len(client.memory.list_sessions()) == 11
        with pytest.raises(ValueError, match="limit"):
            client.memory.list_sessions(limit=0)


@pytest.mark.slow
def test_list_all_sessions_neither_repeats_nor_skips_while_sessions_are_added(
    fresh: LiveServer,
) -> None:
    with MemvaultClient(fresh.url) as client:
        initial = {client.memory.add_session(session_id=f"a{i:03}").session_id for i in range(250)}
        added: list[str] = []
        stop = threading.Event()

        def add_meanwhile() -> None:
            with MemvaultClient(fresh.url) as writer:
                while not stop.is_set():
                    added.append(writer.memory.add_session(session_id=uid("b")).session_id)

        writer = threading.Thread(target=add_meanwhile)
        seen: list[str] = []
        chunks: list[int] = []
        added_before_second: list[str] = []
        try:
            for chunk in client.memory.list_all_sessions(chunk_size=100):
                if not chunks:
                    writer.start()
                    deadline = time.monotonic() + 10
                    while len(added) < 20 and time.monotonic() < deadline:
                        time.sleep(0.005)
                    added_before_second = list(added)
                chunks.append(len(chunk))
                seen.extend(s.session_id for s in chunk)
        finally:
            stop.set()
            writer.join(timeout=10)

    assert len(added_before_second) >= 20
    assert all(size <= 100 for size in chunks)
    assert len(chunks) >= 3
    assert len(seen) == len(set(seen)), "a session was listed twice"
    assert initial <= set(seen), "a session that existed at the start was skipped"
    assert set(seen) <= initial | set(added)
    assert set(added_before_second) <= set(seen)  # created behind the cursor's position
    assert seen[:250] == sorted(initial)  # oldest first


def test_users_are_listed_by_page_and_in_chunks(fresh: LiveServer) -> None:
    with MemvaultClient(fresh.url, page_size=3) as client:
        ids = [client.user.add(user_id=f"u{i}").user_id for i in range(7)]
        page = client.user.list(limit=5)
        assert [u.user_id for u in page] == ids[:5]
        assert page.users == page.items
        rest = client.user.list(limit=5, cursor=page.next_cursor)
        assert [u.user_id for u in rest] == ids[5:]
        assert rest.next_cursor is None
        chunks = list(client.user.list_chunked(chunk_size=2))
        assert [[u.user_id for u in chunk] for chunk in chunks] == [
            ids[0:2],
            ids[2:4],
            ids[4:6],
            ids[6:7],
        ]
        assert all(isinstance(u, User) for chunk in chunks for u in chunk)


# Retries


def test_add_is_retried_after_a_dropped_connection_and_stores_each_message_once(
    server: LiveServer,
) -> None:
    session_id = uid("s")
    proxy = DroppingProxy(server.port)
    try:
        with MemvaultClient(proxy.url, backoff=0.01) as client:
            messages = [Message(role_type="user", content=f"m{i}") for i in range(5)]
            stored = client.memory.add(session_id, messages=messages)
    finally:
        proxy.close()

    assert (proxy.connections, len(proxy.dropped_requests)) == (2, 1)
    assert b"AddMemories" in proxy.dropped_requests[0]  # the server ran it; the client never heard
    uuids = [m.uuid for m in messages]
    assert [m.uuid for m in stored.messages] == uuids
    assert [m.seq for m in stored.messages] == [1, 2, 3, 4, 5]
    rows = server.stored("memories", {"session_id": session_id})
    assert sorted(row["uuid"] for row in rows) == sorted(uuids)  # each message once
    assert server.stored("sessions", {"session_id": session_id})[0]["memory_count"] == 5


def test_a_create_is_not_retried_once_it_may_have_run(
    server: LiveServer, client: MemvaultClient
) -> None:
    user_id = uid("u")
    proxy = DroppingProxy(server.port)
    try:
        with (
            MemvaultClient(proxy.url, backoff=0.01) as through_proxy,
            pytest.raises(MemvaultConnectionError) as dropped,
        ):
            through_proxy.user.add(user_id=user_id)
    finally:
        proxy.close()
    error = dropped.value
    assert isinstance(error, ConnectionError)  # Zep's SDK raised ConnectionError
    assert (error.attempts, error.may_have_run, proxy.connections) == (1, True, 1)
    # it did run: a retry would have answered ALREADY_EXISTS for a user that was created
    assert client.user.get(user_id).user_id == user_id


def test_an_unreachable_server_is_retried_then_reported() -> None:
    closed_port = free_port()
    with (
        MemvaultClient(f"http://127.0.0.1:{closed_port}", max_retries=2, backoff=0.01) as client,
        pytest.raises(MemvaultConnectionError) as unreachable,
    ):
        client.user.delete("anyone")  # not idempotent, but it never reached a server
    assert (unreachable.value.attempts, unreachable.value.may_have_run) == (3, False)


GRAPHQL_UNAVAILABLE = {
    "data": None,
    "errors": [
        {
            "message": "The database is unavailable; try again shortly",
            "extensions": {"code": "SERVICE_UNAVAILABLE", "requestId": "abc123"},
        }
    ],
}
SESSION_NODE = {
    "id": "U2Vzc2lvbjpz",
    "sessionId": "s",
    "userId": None,
    "metadata": {},
    "memoryCount": 0,
    "createdAt": "2025-01-02T03:04:05.678Z",
    "updatedAt": "2025-01-02T03:04:05.678Z",
}


def scripted(*steps: Any) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering with ``steps`` in turn: an exception class to raise, or a
    (status, body) pair."""
    requests: list[httpx.Request] = []
    remaining = list(steps)

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        step = remaining.pop(0)
        if isinstance(step, type) and issubclass(step, Exception):
            raise step("scripted failure", request=request)
        status, body = step
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content)

    return httpx.MockTransport(handle), requests


def record_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    sleeps: list[float] = []
    monkeypatch.setattr("memvault.client.transport.time.sleep", sleeps.append)
    return sleeps


def test_transient_failures_of_safe_calls_are_retried_with_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps = record_sleeps(monkeypatch)
    transport, requests = scripted(
        httpx.ConnectError,
        (200, GRAPHQL_UNAVAILABLE),
        (502, b"<html>bad gateway</html>"),
        (200, {"data": {"session": SESSION_NODE}}),
    )
    with MemvaultClient(
        "http://memvault.test", transport=transport, backoff=0.1, max_backoff=0.3
    ) as client:
        session = client.memory.get_session("s")
    assert session.session_id == "s"
    assert is_utc(session.created_at)
    assert len(requests) == 4
    bounds = [(0.05, 0.1), (0.1, 0.2), (0.15, 0.3)]  # doubling, capped, with jitter
    assert len(sleeps) == 3
    assert all(low <= delay <= high for delay, (low, high) in zip(sleeps, bounds, strict=True))


def test_retries_stop_after_max_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    record_sleeps(monkeypatch)
    transport, requests = scripted(*[(200, GRAPHQL_UNAVAILABLE)] * 3)
    with (
        MemvaultClient("http://memvault.test", transport=transport, max_retries=2) as client,
        pytest.raises(ServiceUnavailableError) as unavailable,
    ):
        client.memory.get("s", lastn=1)
    assert (len(requests), unavailable.value.attempts) == (3, 3)
    assert unavailable.value.request_id == "abc123"
    assert unavailable.value.message == "The database is unavailable; try again shortly"


def test_creates_and_deletes_are_retried_only_when_they_surely_did_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_sleeps(monkeypatch)
    guard_unavailable = (503, GRAPHQL_UNAVAILABLE)  # refused before running anything
    created = (200, {"data": {"createSession": SESSION_NODE}})
    transport, requests = scripted(httpx.ConnectError, guard_unavailable, created)
    with MemvaultClient("http://memvault.test", transport=transport) as client:
        assert client.memory.add_session(session_id="s").session_id == "s"
    assert len(requests) == 3

    for failure in [(200, GRAPHQL_UNAVAILABLE), (504, b""), httpx.ReadTimeout]:
        transport, requests = scripted(failure, created)
        with (
            MemvaultClient("http://memvault.test", transport=transport) as client,
            pytest.raises(MemvaultClientError) as error,
        ):
            client.memory.delete("s")
        assert error.value.transient
        assert error.value.may_have_run
        assert len(requests) == 1, failure


def test_requests_carry_the_key_and_one_document_from_documents_py() -> None:
    from memvault.client import documents

    transport, requests = scripted((200, {"data": {"user": None}}))
    with (
        MemvaultClient(
            "http://memvault.test/graphql/", api_key="mv_k", transport=transport
        ) as client,
        pytest.raises(NotFoundError, match="user 'ada' not found"),
    ):
        client.user.get("ada")
    request = requests[0]
    assert str(request.url) == "http://memvault.test/graphql"
    assert request.headers["authorization"] == "Bearer mv_k"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert body["query"] == documents.OPERATIONS["GetUser"]
    assert (body["operationName"], body["variables"]) == ("GetUser", {"userId": "ada"})


def test_answers_that_are_not_graphql_become_client_errors() -> None:
    cases: list[tuple[tuple[int, bytes], type[MemvaultClientError], Callable[[str], bool]]] = [
        ((404, b"Not Found"), MemvaultClientError, lambda m: "base_url" in m),
        ((413, b""), BadRequestError, lambda m: "413" in m),
        ((200, b"{not json"), MemvaultClientError, lambda m: "200" in m),
    ]
    for step, cls, check in cases:
        transport, _ = scripted(step)
        with (
            MemvaultClient("http://memvault.test", transport=transport, max_retries=0) as client,
            pytest.raises(cls) as error,
        ):
            client.user.get("ada")
        assert check(error.value.message), error.value.message


def test_memory_search_by_session_user_and_text(client: MemvaultClient) -> None:
    user, s1, s2, word = uid("u"), uid("s"), uid("s"), uid("w").replace("-", "")
    client.user.add(user_id=user)
    client.memory.add(s1, [Message(role_type="user", content=f"{word} {word} home")], user_id=user)
    client.memory.add(s1, [Message(role_type="assistant", content=f"{word} noted")])
    client.memory.add(s2, [Message(role_type="user", content=f"{word} elsewhere")])

    found = client.memory.search(s1, text=word)
    assert [r.message.content for r in found] == [f"{word} {word} home", f"{word} noted"]
    assert all(isinstance(r, MemorySearchResult) and r.session_id == s1 for r in found)
    assert found[0].score > found[1].score
    by_user = client.memory.search(user_id=user, text=f"{word} -home", limit=5)
    assert [r.message.content for r in by_user] == [f"{word} noted"]
    everywhere = client.memory.search(text=word, limit=2)
    assert len(everywhere) == 2
    assert len(client.memory.search(text=word, limit=50)) == 3
    with pytest.raises(BadRequestError):
        client.memory.search(s1, text="x" * 10_000)
    with pytest.raises(ValueError, match="text"):
        client.memory.search(s1, text=" ")


def test_the_readme_search_example(fresh: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    (example,) = fenced("python", section("Search"))
    with MemvaultClient(fresh.url) as client:
        client.user.add(user_id="ada")
        messages = [
            Message(role_type="user", content="How does the engine add?"),
            Message(role_type="assistant", content="The steam engine? No: the difference engine."),
        ]
        client.memory.add("ada-1", messages, user_id="ada")
        exec(example, {"client": client})
    assert capsys.readouterr().out.splitlines()[0].endswith(" How does the engine add?")
