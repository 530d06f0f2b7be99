"""Sessions: DESIGN.md "Semantics / Sessions", through GraphQL and in the stored documents."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.documents import (
    CREATE_SESSION,
    DELETE_SESSION,
    RESTORE_SESSION,
    UPDATE_SESSION,
    UPSERT_SESSION,
    add,
    assert_code,
    assert_count,
    create_session,
    create_user,
    delete_memory,
    delete_session,
    delete_user,
    get_memory,
    get_node,
    get_session,
    get_user,
    list_sessions,
    live_uuids,
    restore_session,
    stored,
    stored_one,
    update_session,
    upsert_session,
    upsert_user,
)
from tests.support.graphql import GraphQLClient, snapshot

Db = AsyncDatabase[dict[str, Any]]


async def test_create_session_returns_and_stores_it(gql: GraphQLClient, db: Db) -> None:
    session = await create_session(gql, "s1", metadata={"topic": "x"})

    assert session["sessionId"] == "s1"
    assert session["userId"] is None
    assert session["metadata"] == {"topic": "x"}
    assert session["memoryCount"] == 0
    doc = await stored_one(db, "sessions", session_id="s1")
    assert doc["project_id"] == "default"
    assert doc["user_id"] == ""
    assert (doc["next_seq"], doc["memory_count"], doc["deleted_ms"]) == (0, 0, 0)
    assert doc["metadata"] == {"topic": "x"}
    assert isinstance(doc["created_ms"], int)

    await create_user(gql, "u1")
    with_user = await create_session(gql, "s2", userId="u1")
    assert with_user["userId"] == "u1"
    assert (await stored_one(db, "sessions", session_id="s2"))["user_id"] == "u1"
    user = await get_user(gql, "u1")
    assert user is not None
    assert user["sessions"] == {"totalCount": 1, "nodes": [{"sessionId": "s2"}]}


async def test_create_session_already_exists_when_live(gql: GraphQLClient, db: Db) -> None:
    await create_session(gql, "s1", metadata={"a": 1})
    await add(gql, "s1", "hi")
    before = await snapshot(db)

    error = await gql.error(CREATE_SESSION, {"input": {"sessionId": "s1", "metadata": {"b": 2}}})

    assert_code(error, "ALREADY_EXISTS")
    assert error["extensions"]["field"] == "sessionId"
    assert await snapshot(db) == before


@pytest.mark.parametrize("user_state", ["missing", "deleted"])
async def test_create_session_user_must_exist(gql: GraphQLClient, db: Db, user_state: str) -> None:
    if user_state == "deleted":
        await create_user(gql, "u1")
        await delete_user(gql, "u1")
    before = await snapshot(db)

    error = await gql.error(CREATE_SESSION, {"input": {"sessionId": "s1", "userId": "u1"}})

    assert_code(error, "NOT_FOUND")
    assert error["extensions"]["field"] == "userId"
    assert await snapshot(db) == before
    assert await stored(db, "sessions", session_id="s1") == []


async def test_create_session_on_deleted_id_starts_fresh_and_keeps_next_seq(
    gql: GraphQLClient, db: Db
) -> None:
    await create_session(gql, "s1", metadata={"old": 1})
    old = await add(gql, "s1", "a", "b", "c", uuids=["m1", "m2", "m3"])
    old_max = max(m["seq"] for m in old["memories"])
    await delete_session(gql, "s1")

    session = await create_session(gql, "s1", metadata={"new": 2})

    assert session["metadata"] == {"new": 2}
    assert session["memoryCount"] == 0
    doc = await stored_one(db, "sessions", session_id="s1")
    assert doc["deleted_ms"] == 0
    assert doc["metadata"] == {"new": 2}
    assert doc["next_seq"] >= old_max
    await assert_count(gql, db, "s1", 0)
    for uuid in ("m1", "m2", "m3"):
        assert (await stored_one(db, "memories", uuid=uuid))["deleted_ms"] > 0
        assert await get_memory(gql, uuid) is None

    new = await add(gql, "s1", "d", uuids=["m4"])
    assert new["memories"][0]["seq"] > old_max
    assert new["session"]["memoryCount"] == 1
    await assert_count(gql, db, "s1", 1)
    # restore on the live, recreated session changes nothing: old memories stay deleted
    before = await snapshot(db)
    await restore_session(gql, "s1")
    assert await snapshot(db) == before
    assert await live_uuids(gql, "s1") == ["m4"]


async def test_upsert_session_creates(gql: GraphQLClient, db: Db) -> None:
    await create_user(gql, "u1")

    session = await upsert_session(gql, "s1", userId="u1", metadata={"a": 1})

    assert (session["sessionId"], session["userId"], session["metadata"]) == ("s1", "u1", {"a": 1})
    assert session["memoryCount"] == 0
    doc = await stored_one(db, "sessions", session_id="s1")
    assert (doc["user_id"], doc["metadata"], doc["deleted_ms"]) == ("u1", {"a": 1}, 0)
    assert (doc["next_seq"], doc["memory_count"]) == (0, 0)

    plain = await upsert_session(gql, "s2")
    assert (plain["userId"], plain["metadata"]) == (None, {})
    assert (await stored_one(db, "sessions", session_id="s2"))["user_id"] == ""


async def test_upsert_session_user_must_exist(gql: GraphQLClient, db: Db) -> None:
    before = await snapshot(db)
    error = await gql.error(UPSERT_SESSION, {"input": {"sessionId": "s1", "userId": "ghost"}})
    assert_code(error, "NOT_FOUND")
    assert await snapshot(db) == before


async def test_upsert_session_merges(gql: GraphQLClient, db: Db) -> None:
    created = await create_session(gql, "s1", metadata={"a": 1, "n": {"x": 1}, "gone": "y"})
    await add(gql, "s1", "hi")

    session = await upsert_session(gql, "s1", metadata={"n": {"y": 2}, "gone": None})

    assert session["metadata"] == {"a": 1, "n": {"x": 1, "y": 2}}
    assert session["createdAt"] == created["createdAt"]
    assert session["memoryCount"] == 1
    doc = await stored_one(db, "sessions", session_id="s1")
    assert doc["metadata"] == {"a": 1, "n": {"x": 1, "y": 2}}
    assert (doc["memory_count"], doc["next_seq"]) == (1, 1)


async def test_upsert_session_revives_deleted_session_memories_stay_deleted(
    gql: GraphQLClient, db: Db
) -> None:
    await create_session(gql, "s1", metadata={"a": 1})
    await add(gql, "s1", "a", "b", uuids=["m1", "m2"])
    await delete_session(gql, "s1")

    session = await upsert_session(gql, "s1", metadata={"b": 2})

    assert session["sessionId"] == "s1"
    assert session["metadata"]["b"] == 2
    assert session["memoryCount"] == 0
    doc = await stored_one(db, "sessions", session_id="s1")
    assert doc["deleted_ms"] == 0
    for uuid in ("m1", "m2"):
        assert (await stored_one(db, "memories", uuid=uuid))["deleted_ms"] > 0
        assert await get_memory(gql, uuid) is None
    await assert_count(gql, db, "s1", 0)
    assert await list_sessions(gql) == (1, ["s1"])


async def test_upsert_session_may_gain_a_user(gql: GraphQLClient, db: Db) -> None:
    await create_user(gql, "u1")
    await create_session(gql, "s1", metadata={"a": 1})

    session = await upsert_session(gql, "s1", userId="u1")

    assert session["userId"] == "u1"
    assert session["metadata"] == {"a": 1}
    assert (await stored_one(db, "sessions", session_id="s1"))["user_id"] == "u1"
    assert await list_sessions(gql, "u1") == (1, ["s1"])
    # the same user again is fine, and no user given keeps it
    assert (await upsert_session(gql, "s1", userId="u1"))["userId"] == "u1"
    assert (await upsert_session(gql, "s1", metadata={"b": 1}))["userId"] == "u1"


async def test_upsert_session_moving_to_another_user_is_conflict(
    gql: GraphQLClient, db: Db
) -> None:
    await create_user(gql, "u1")
    await create_user(gql, "u2")
    await create_session(gql, "s1", userId="u1")
    before = await snapshot(db)

    error = await gql.error(
        UPSERT_SESSION, {"input": {"sessionId": "s1", "userId": "u2", "metadata": {"a": 1}}}
    )

    assert_code(error, "CONFLICT")
    assert await snapshot(db) == before


@pytest.mark.parametrize("state", ["missing", "deleted"])
async def test_update_session_not_found(gql: GraphQLClient, db: Db, state: str) -> None:
    if state == "deleted":
        await create_session(gql, "s1")
        await delete_session(gql, "s1")
    before = await snapshot(db)

    error = await gql.error(UPDATE_SESSION, {"input": {"sessionId": "s1", "metadata": {"a": 1}}})

    assert_code(error, "NOT_FOUND")
    assert await snapshot(db) == before


async def test_update_session_merges_metadata(gql: GraphQLClient, db: Db) -> None:
    await create_session(gql, "s1", metadata={"a": 1, "b": {"c": 1}, "d": [1, 2]})

    session = await update_session(gql, "s1", {"b": {"e": 2}, "d": [3], "a": None})

    assert session["metadata"] == {"b": {"c": 1, "e": 2}, "d": [3]}
    doc = await stored_one(db, "sessions", session_id="s1")
    assert doc["metadata"] == {"b": {"c": 1, "e": 2}, "d": [3]}
    assert doc["updated_ms"] >= doc["created_ms"]


async def test_delete_session_soft_deletes_it_and_its_memories(gql: GraphQLClient, db: Db) -> None:
    node_id = (await create_session(gql, "s1"))["id"]
    await create_session(gql, "s2")
    await add(gql, "s1", "a", "b", uuids=["m1", "m2"])
    assert await get_node(gql, node_id) == {"id": node_id, "__typename": "Session"}
    await add(gql, "s2", "c", uuids=["m3"])

    await delete_session(gql, "s1")

    doc = await stored_one(db, "sessions", session_id="s1")
    assert doc["deleted_ms"] > 0
    for uuid in ("m1", "m2"):
        assert (await stored_one(db, "memories", uuid=uuid))["deleted_ms"] > 0
        assert await get_memory(gql, uuid) is None
    assert await get_session(gql, "s1") is None
    assert await get_node(gql, node_id) is None
    assert await list_sessions(gql) == (1, ["s2"])
    assert (await stored_one(db, "memories", uuid="m3"))["deleted_ms"] == 0
    await assert_count(gql, db, "s2", 1)


@pytest.mark.parametrize("state", ["missing", "deleted"])
async def test_delete_session_not_found(gql: GraphQLClient, db: Db, state: str) -> None:
    if state == "deleted":
        await add(gql, "s1", "a")
        await delete_session(gql, "s1")
    before = await snapshot(db)

    error = await gql.error(DELETE_SESSION, {"id": "s1"})

    assert_code(error, "NOT_FOUND")
    assert await snapshot(db) == before


async def test_restore_session_brings_back_exactly_what_its_deletion_took(
    gql: GraphQLClient, db: Db
) -> None:
    await create_session(gql, "s1", metadata={"a": 1})
    await add(gql, "s1", "a", "b", "c", uuids=["m1", "m2", "m3"])
    await delete_memory(gql, "m2")
    await assert_count(gql, db, "s1", 2)
    await delete_session(gql, "s1")

    session = await restore_session(gql, "s1")

    assert session["sessionId"] == "s1"
    assert session["metadata"] == {"a": 1}
    assert session["memoryCount"] == 2
    assert (await stored_one(db, "sessions", session_id="s1"))["deleted_ms"] == 0
    docs = sorted(await stored(db, "memories", session_id="s1"), key=lambda d: d["seq"])
    assert [(d["uuid"], d["deleted_ms"] == 0) for d in docs] == [
        ("m1", True),
        ("m2", False),
        ("m3", True),
    ]
    assert await live_uuids(gql, "s1") == ["m1", "m3"]
    assert await get_memory(gql, "m2") is None
    await assert_count(gql, db, "s1", 2)


async def test_restore_session_on_live_session_returns_it_unchanged(
    gql: GraphQLClient, db: Db
) -> None:
    await add(gql, "s1", "a", "b", uuids=["m1", "m2"])
    await delete_memory(gql, "m1")
    live = await get_session(gql, "s1")
    assert live is not None
    before = await snapshot(db)

    session = await restore_session(gql, "s1")

    assert session == {key: live[key] for key in session}
    assert await snapshot(db) == before
    await assert_count(gql, db, "s1", 1)


@pytest.mark.parametrize("state", ["never", "purged"])
async def test_restore_session_not_found(gql: GraphQLClient, db: Db, state: str) -> None:
    if state == "purged":
        await add(gql, "s1", "a")
        await delete_session(gql, "s1")
        await db.sessions.delete_many({"session_id": "s1"})
        await db.memories.delete_many({"session_id": "s1"})
    before = await snapshot(db)

    error = await gql.error(RESTORE_SESSION, {"id": "s1"})

    assert_code(error, "NOT_FOUND")
    assert await snapshot(db) == before


async def test_restore_session_of_deleted_user_is_conflict(gql: GraphQLClient, db: Db) -> None:
    await create_user(gql, "u1")
    await add(gql, "s1", "a", user_id="u1", uuids=["m1"])
    await delete_user(gql, "u1")
    before = await snapshot(db)

    error = await gql.error(RESTORE_SESSION, {"id": "s1"})

    assert_code(error, "CONFLICT")
    assert await snapshot(db) == before
    # once the user is back, the session can be restored with its memory
    await upsert_user(gql, "u1")
    session = await restore_session(gql, "s1")
    assert (session["userId"], session["memoryCount"]) == ("u1", 1)
    await assert_count(gql, db, "s1", 1)


@pytest.mark.parametrize(
    "revive",
    [
        'mutation { upsertSession(input: {sessionId: "s1"}) { sessionId } }',
        'mutation { addMemories(input: {sessionId: "s1", memories: [{roleType: USER, content: "x"}]}) { session { sessionId } } }',
    ],
    ids=["upsertSession", "addMemories"],
)
async def test_session_of_deleted_user_is_not_revived(
    gql: GraphQLClient, db: Any, revive: str
) -> None:
    await gql.ok('mutation { createUser(input: {userId: "u1"}) { userId } }')
    await gql.ok('mutation { createSession(input: {sessionId: "s1", userId: "u1"}) { sessionId } }')
    await gql.ok('mutation { deleteUser(userId: "u1") { deleted } }')
    before = await snapshot(db)
    error = await gql.error(revive)
    assert error["extensions"]["code"] == "CONFLICT"
    assert await snapshot(db) == before
