"""API keys, scopes, auth modes and project isolation through every entry point."""

from __future__ import annotations

import contextlib
import dataclasses
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from memvault.config import Settings
from memvault.db import api_keys
from memvault.errors import Unauthenticated
from memvault.main import create_app
from memvault.security import Authenticator
from tests.support.asgi import post_scope, running
from tests.support.commands import CommandCounter, listened_app
from tests.support.graphql import GraphQLClient, snapshot

Db = AsyncDatabase[dict[str, Any]]


@contextlib.asynccontextmanager
async def serve(
    settings: Settings, client: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=client)
    async with running(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://memvault.test") as http:
            yield http


async def make_key(db: Db, project: str, scope: str) -> str:
    _, key = await api_keys.create_key(db, project_id=project, scope=scope)
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_open_mode_serves_the_default_project(gql: GraphQLClient, db: Db) -> None:
    await gql.ok('mutation { createUser(input: {userId: "u1"}) { userId } }')
    stored = await db.users.find_one({"user_id": "u1"})
    assert stored is not None
    assert stored["project_id"] == "default"


async def test_once_a_key_exists_requests_need_one(gql: GraphQLClient, db: Db) -> None:
    key = await make_key(db, "acme", "write")
    response = await gql.http.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    for header in (f"Bearer {key}", f"Api-Key {key}", f"bearer  {key} "):
        response = await gql.http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Authorization": header}
        )
        assert response.status_code == 200, header
    for header in ("Bearer nope", f"Basic {key}", "Bearer", key):
        response = await gql.http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Authorization": header}
        )
        assert response.status_code == 401, header
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_required_mode_needs_a_key_even_with_none_created(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    async with serve(dataclasses.replace(settings, auth="required"), mongo_client) as http:
        response = await http.post("/graphql", json={"query": "{ __typename }"})
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert (await http.get("/healthz")).status_code == 200


async def test_revoked_key_is_refused(gql: GraphQLClient, db: Db) -> None:
    doc, key = await api_keys.create_key(db, project_id="acme", scope="write")
    await gql.ok("{ __typename }", headers=bearer(key))
    await api_keys.revoke_key(db, key_id=doc["key_id"])
    response = await gql.http.post(
        "/graphql", json={"query": "{ __typename }"}, headers=bearer(key)
    )
    assert response.status_code == 401


async def test_keys_are_stored_only_as_hashes(db: Db) -> None:
    _, key = await api_keys.create_key(db, project_id="acme", scope="read")
    stored = await db.api_keys.find_one({})
    assert stored is not None
    assert key not in str(stored)
    assert stored["key_hash"] == api_keys.hash_key(key)


MUTATIONS = {
    "createUser": 'mutation { createUser(input: {userId: "x"}) { userId } }',
    "upsertUser": 'mutation { upsertUser(input: {userId: "x"}) { userId } }',
    "updateUser": 'mutation { updateUser(input: {userId: "u1", firstName: "X"}) { userId } }',
    "deleteUser": 'mutation { deleteUser(userId: "u1") { deleted } }',
    "forgetUser": 'mutation { forgetUser(userId: "u1") { deleted } }',
    "createSession": 'mutation { createSession(input: {sessionId: "x"}) { sessionId } }',
    "upsertSession": 'mutation { upsertSession(input: {sessionId: "s1", metadata: {a: 1}}) { sessionId } }',
    "updateSession": 'mutation { updateSession(input: {sessionId: "s1", metadata: {a: 1}}) { sessionId } }',
    "deleteSession": 'mutation { deleteSession(sessionId: "s1") { deleted } }',
    "restoreSession": 'mutation { restoreSession(sessionId: "s1") { sessionId } }',
    "addMemories": 'mutation { addMemories(input: {sessionId: "s1", memories: [{roleType: USER, content: "x"}]}) { memories { uuid } } }',
    "updateMemory": 'mutation { updateMemory(input: {uuid: "m1", content: "changed"}) { uuid } }',
    "deleteMemory": 'mutation { deleteMemory(uuid: "m1") { deleted } }',
}
SEED = """mutation {
  createUser(input: {userId: "u1", metadata: {owner: "acme"}}) { userId }
  addMemories(input: {sessionId: "s1", userId: "u1", memories: [{uuid: "m1", roleType: USER, content: "secret"}]}) { session { sessionId } }
}"""


async def test_read_keys_cannot_write_and_only_admins_forget(gql: GraphQLClient, db: Db) -> None:
    admin = await make_key(db, "acme", "admin")
    read = await make_key(db, "acme", "read")
    write = await make_key(db, "acme", "write")
    await gql.ok(SEED, headers=bearer(admin))
    before = await snapshot(db)
    for name, mutation in MUTATIONS.items():
        error = await gql.error(mutation, headers=bearer(read))
        assert error["extensions"]["code"] == "FORBIDDEN", name
        needed = "admin" if name == "forgetUser" else "write"
        assert f"needs a key with scope '{needed}'" in error["message"], name
    error = await gql.error(MUTATIONS["forgetUser"], headers=bearer(write))
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert await snapshot(db) == before
    assert (await gql.ok('{ user(userId: "u1") { userId } }', headers=bearer(read))) == {
        "user": {"userId": "u1"}
    }
    await gql.ok(MUTATIONS["forgetUser"], headers=bearer(admin))
    assert await db.users.count_documents({}) == 0


async def test_nothing_crosses_projects(gql: GraphQLClient, db: Db) -> None:
    acme = await make_key(db, "acme", "admin")
    other = await make_key(db, "other", "admin")
    await gql.ok(SEED, headers=bearer(acme))
    ids = await gql.ok(
        '{ user(userId: "u1") { id } session(sessionId: "s1") { id } memory(uuid: "m1") { id } }',
        headers=bearer(acme),
    )
    before = await snapshot(db)

    reads = await gql.ok(
        """query($u: ID!, $s: ID!, $m: ID!) {
          user(userId: "u1") { userId } session(sessionId: "s1") { sessionId } memory(uuid: "m1") { uuid }
          users { totalCount nodes { userId } } sessions { totalCount nodes { sessionId } }
          filtered: sessions(filter: {userId: "u1"}) { totalCount }
          byMeta: users(filter: {metadata: {owner: "acme"}}) { totalCount }
          nu: node(id: $u) { id } ns: node(id: $s) { id } nm: node(id: $m) { id } }""",
        {"u": ids["user"]["id"], "s": ids["session"]["id"], "m": ids["memory"]["id"]},
        headers=bearer(other),
    )
    assert reads == {
        "user": None, "session": None, "memory": None,
        "users": {"totalCount": 0, "nodes": []}, "sessions": {"totalCount": 0, "nodes": []},
        "filtered": {"totalCount": 0}, "byMeta": {"totalCount": 0},
        "nu": None, "ns": None, "nm": None,
    }  # fmt: skip

    not_found = ["updateUser", "deleteUser", "forgetUser", "updateSession", "deleteSession",
                 "restoreSession", "updateMemory", "deleteMemory"]  # fmt: skip
    for name in not_found:
        error = await gql.error(MUTATIONS[name], headers=bearer(other))
        assert error["extensions"]["code"] == "NOT_FOUND", name
    assert await snapshot(db) == before

    # The same ids in another project are another project's own rows.
    await gql.ok(SEED, headers=bearer(other))
    await gql.ok(MUTATIONS["upsertSession"], headers=bearer(other))
    await gql.ok(MUTATIONS["deleteSession"], headers=bearer(other))
    after = await snapshot(db)
    assert [d for d in after["users"] if d["project_id"] == "acme"] == before["users"]
    assert [d for d in after["sessions"] if d["project_id"] == "acme"] == before["sessions"]
    assert [d for d in after["memories"] if d["project_id"] == "acme"] == before["memories"]
    assert {d["project_id"] for d in after["memories"]} == {"acme", "other"}
    acme_view = await gql.ok(
        '{ session(sessionId: "s1") { memories { nodes { content } } } }', headers=bearer(acme)
    )
    assert acme_view == {"session": {"memories": {"nodes": [{"content": "secret"}]}}}


@pytest.mark.parametrize("size", [5 * 1024 * 1024 + 1, 8 * 1024 * 1024])
async def test_bodies_over_the_limit_get_413_before_parsing(
    gql: GraphQLClient, db: Db, size: int
) -> None:
    body = (
        b'{"query": "mutation { createUser(input: {userId: \\"big\\"}) { userId } }", "x": "'
        + b"a" * size
        + b'"}'
    )
    response = await gql.http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await db.users.count_documents({}) == 0


async def test_body_without_length_is_still_limited(gql: GraphQLClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield b" " * (1024 * 1024)

    response = await gql.http.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_an_overlong_authorization_is_refused_before_any_lookup(
    mongo_uri: str, db: Db, settings: Settings
) -> None:
    """Any Authorization value was looked up and its answer cached under the whole value (100
    random 4 MB values, each a 401, kept 412 MB of the server's RSS); past 4096 bytes it is now
    a 401 with no database command, and nothing kept."""
    counter = CommandCounter()
    async with listened_app(mongo_uri, settings, counter) as gql:
        counter.commands.clear()
        for size in (4097, 6 * 1024, 1024 * 1024):
            response = await gql.http.post(
                "/graphql",
                json={"query": "{ __typename }"},
                headers={"Authorization": "Bearer " + "k" * (size - len("Bearer "))},
            )
            assert response.status_code == 401, size
            assert response.json()["errors"] == [
                {
                    "message": "Authorization is longer than 4096 bytes",
                    "extensions": {"code": "UNAUTHENTICATED"},
                }
            ]
        assert counter.commands == []
        at_limit = "Bearer " + "k" * (4096 - len("Bearer "))
        response = await gql.http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Authorization": at_limit}
        )
        assert response.status_code == 401
        assert response.json()["errors"][0]["message"] == "unknown or revoked API key"
        assert counter.commands == ["find"]


def fake_lookups(monkeypatch: pytest.MonkeyPatch, good: str) -> list[object]:
    """Key lookups answer from memory (``good`` is the one active key); returns the lookups."""
    lookups: list[object] = []
    record = {"project_id": "acme", "scope": "read", "key_id": "k1"}

    async def find_active_key(db: Db, **query: str) -> dict[str, str] | None:
        lookups.append(query)
        found = query.get("key_hash") == api_keys.hash_key(good) or query.get("key") == good
        return record if found else None

    monkeypatch.setattr(api_keys, "find_active_key", find_active_key)
    return lookups


async def unknown(authenticator: Authenticator, key: str) -> None:
    with pytest.raises(Unauthenticated):
        await authenticator.principal(f"Bearer {key}")


async def test_a_flood_of_unknown_keys_keeps_known_keys_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cache was emptied once it held 10,000 lookups, so anyone sending random keys
    emptied it for everyone; unknown keys now have a small cache of their own."""
    lookups = fake_lookups(monkeypatch, "good")
    authenticator = Authenticator(cast("Db", None), required=False, cache_seconds=60)
    assert (await authenticator.principal("Bearer good")).project_id == "acme"
    for n in range(12_000):
        await unknown(authenticator, f"random-{n}")
    assert len(lookups) == 12_001
    assert (await authenticator.principal("Bearer good")).project_id == "acme"
    assert len(lookups) == 12_001  # still cached
    await unknown(authenticator, "random-11999")  # a recent miss: still cached too
    assert len(lookups) == 12_001


async def test_unknown_keys_do_not_grow_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lookups are cached by the key's hash, unknown ones a bounded few: 3,000 unknown keys of
    4 KB keep well under what keeping them would (12 MB)."""
    fake_lookups(monkeypatch, "good")
    authenticator = Authenticator(cast("Db", None), required=False, cache_seconds=60)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(3_000):
            await unknown(authenticator, f"{n:08d}" + "k" * 4000)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, kept


async def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """The whole body (up to 5 MiB) was read before the key was checked; now a 401 comes
    from the headers alone, and the body is never read."""
    app = create_app(dataclasses.replace(settings, auth="required"), client=mongo_client)
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b" " * 65536, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for authorization in (None, b"Bearer nope", b"Bearer " + b"k" * 8192):
        sent.clear()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"5000000")]
        if authorization is not None:
            headers.append((b"authorization", authorization))
        scope = post_scope(headers)
        async with running(app) as served:
            await served(scope, receive, send)
        assert sent[0]["status"] == 401, authorization
        assert b"UNAUTHENTICATED" in sent[1]["body"]
    assert reads == 0
