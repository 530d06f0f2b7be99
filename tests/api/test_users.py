"""Users: DESIGN.md "Semantics / Users", through GraphQL and in the stored documents."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.documents import (
    CREATE_USER,
    DELETE_USER,
    FORGET_USER,
    UPDATE_USER,
    add,
    assert_code,
    create_session,
    create_user,
    delete_session,
    delete_user,
    get_memory,
    get_node,
    get_session,
    get_user,
    list_sessions,
    list_users,
    stored,
    stored_one,
    update_user,
    upsert_user,
)
from tests.support.graphql import GraphQLClient, snapshot

Db = AsyncDatabase[dict[str, Any]]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_create_user_returns_and_stores_it(gql: GraphQLClient, db: Db) -> None:
    user = await create_user(
        gql, "u1", email="a@example.com", firstName="Ada", metadata={"tier": "gold"}
    )
    assert user["userId"] == "u1"
    assert (user["email"], user["firstName"], user["lastName"]) == ("a@example.com", "Ada", None)
    assert user["metadata"] == {"tier": "gold"}
    assert ISO_MS.match(user["createdAt"])
    assert ISO_MS.match(user["updatedAt"])

    doc = await stored_one(db, "users", user_id="u1")
    assert doc["project_id"] == "default"
    assert (doc["email"], doc["first_name"], doc["last_name"]) == ("a@example.com", "Ada", None)
    assert doc["metadata"] == {"tier": "gold"}
    assert isinstance(doc["created_ms"], int)
    assert doc["created_ms"] > 0
    assert doc["updated_ms"] == doc["created_ms"]
    assert doc["deleted_ms"] == 0
    assert doc["order_key"] == f"{doc['created_ms']:013d}u1"
    assert await get_user(gql, "u1") is not None


async def test_create_user_already_exists_when_live(gql: GraphQLClient, db: Db) -> None:
    await create_user(gql, "u1", email="a@example.com", metadata={"a": 1})
    before = await snapshot(db)

    error = await gql.error(CREATE_USER, {"input": {"userId": "u1", "metadata": {"b": 2}}})

    assert_code(error, "ALREADY_EXISTS")
    assert error["extensions"]["field"] == "userId"
    assert await snapshot(db) == before


async def test_create_user_on_deleted_id_starts_fresh(gql: GraphQLClient, db: Db) -> None:
    await create_user(gql, "u1", email="old@example.com", firstName="Old", metadata={"old": 1})
    await create_session(gql, "s1", userId="u1", metadata={"k": "v"})
    memory = (await add(gql, "s1", "hello", uuids=["m1"]))["memories"][0]
    await delete_user(gql, "u1")

    user = await create_user(gql, "u1", lastName="New", metadata={"new": True})

    assert user["metadata"] == {"new": True}
    assert (user["email"], user["firstName"], user["lastName"]) == (None, None, "New")
    doc = await stored_one(db, "users", user_id="u1")
    assert doc["deleted_ms"] == 0
    assert doc["metadata"] == {"new": True}
    assert (doc["email"], doc["first_name"], doc["last_name"]) == (None, None, "New")
    # the old user's sessions and memories stay deleted
    session = await stored_one(db, "sessions", session_id="s1")
    assert session["deleted_ms"] > 0
    assert (await stored_one(db, "memories", uuid="m1"))["deleted_ms"] > 0
    assert await get_session(gql, "s1") is None
    assert await get_memory(gql, memory["uuid"]) is None
    fresh = await get_user(gql, "u1")
    assert fresh is not None
    assert fresh["sessions"] == {"totalCount": 0, "nodes": []}
    assert await list_sessions(gql, "u1") == (0, [])


async def test_upsert_user_creates(gql: GraphQLClient, db: Db) -> None:
    user = await upsert_user(gql, "u1", email="a@example.com", metadata={"a": {"b": 1}})

    assert (user["userId"], user["email"], user["metadata"]) == (
        "u1",
        "a@example.com",
        {"a": {"b": 1}},
    )
    doc = await stored_one(db, "users", user_id="u1")
    assert (doc["email"], doc["metadata"], doc["deleted_ms"]) == (
        "a@example.com",
        {"a": {"b": 1}},
        0,
    )
    assert doc["project_id"] == "default"
    assert await list_users(gql) == (1, ["u1"])


async def test_upsert_user_patches_given_fields_and_merges_metadata(
    gql: GraphQLClient, db: Db
) -> None:
    created = await create_user(
        gql, "u1", email="a@example.com", firstName="Ada", metadata={"a": 1, "n": {"x": 1}}
    )

    user = await upsert_user(gql, "u1", lastName="Lovelace", metadata={"n": {"y": 2}, "a": None})

    assert (user["email"], user["firstName"], user["lastName"]) == (
        "a@example.com",
        "Ada",
        "Lovelace",
    )
    assert user["metadata"] == {"n": {"x": 1, "y": 2}}
    assert user["createdAt"] == created["createdAt"]
    doc = await stored_one(db, "users", user_id="u1")
    assert (doc["email"], doc["first_name"], doc["last_name"]) == (
        "a@example.com",
        "Ada",
        "Lovelace",
    )
    assert doc["metadata"] == {"n": {"x": 1, "y": 2}}
    assert doc["updated_ms"] >= doc["created_ms"]


async def test_upsert_user_revives_deleted_user(gql: GraphQLClient, db: Db) -> None:
    await create_user(gql, "u1", email="a@example.com", metadata={"a": 1})
    await delete_user(gql, "u1")
    assert await get_user(gql, "u1") is None

    user = await upsert_user(gql, "u1", firstName="Back", metadata={"b": 2})

    assert user["userId"] == "u1"
    assert user["firstName"] == "Back"
    assert user["metadata"]["b"] == 2
    doc = await stored_one(db, "users", user_id="u1")
    assert doc["deleted_ms"] == 0
    assert doc["first_name"] == "Back"
    assert await get_user(gql, "u1") is not None
    assert await list_users(gql) == (1, ["u1"])


@pytest.mark.parametrize("state", ["missing", "deleted"])
async def test_update_user_not_found(gql: GraphQLClient, db: Db, state: str) -> None:
    if state == "deleted":
        await create_user(gql, "u1", email="a@example.com")
        await delete_user(gql, "u1")
    before = await snapshot(db)

    error = await gql.error(
        UPDATE_USER, {"input": {"userId": "u1", "firstName": "X", "metadata": {"a": 1}}}
    )

    assert_code(error, "NOT_FOUND")
    assert await snapshot(db) == before


async def test_update_user_omitted_untouched_null_clears_metadata_merged(
    gql: GraphQLClient, db: Db
) -> None:
    await create_user(
        gql,
        "u1",
        email="a@example.com",
        firstName="Ada",
        lastName="Lovelace",
        metadata={"a": 1, "b": {"c": 2}},
    )

    user = await update_user(gql, "u1", firstName=None, metadata={"b": {"d": 3}})

    assert (user["email"], user["firstName"], user["lastName"]) == (
        "a@example.com",
        None,
        "Lovelace",
    )
    assert user["metadata"] == {"a": 1, "b": {"c": 2, "d": 3}}
    doc = await stored_one(db, "users", user_id="u1")
    assert (doc["email"], doc["first_name"], doc["last_name"]) == (
        "a@example.com",
        None,
        "Lovelace",
    )
    assert doc["metadata"] == {"a": 1, "b": {"c": 2, "d": 3}}

    # only metadata given: every profile field untouched
    user = await update_user(gql, "u1", metadata={"a": None})
    assert (user["email"], user["firstName"], user["lastName"]) == (
        "a@example.com",
        None,
        "Lovelace",
    )
    assert user["metadata"] == {"b": {"c": 2, "d": 3}}
    # metadata omitted: it stays
    user = await update_user(gql, "u1", email=None)
    assert user["email"] is None
    assert user["metadata"] == {"b": {"c": 2, "d": 3}}
    doc = await stored_one(db, "users", user_id="u1")
    assert (doc["email"], doc["metadata"]) == (None, {"b": {"c": 2, "d": 3}})


async def test_delete_user_cascades_softly(gql: GraphQLClient, db: Db) -> None:
    user = await create_user(gql, "u1")
    await create_user(gql, "u2")
    await create_session(gql, "s1", userId="u1")
    await create_session(gql, "s2", userId="u1")
    await create_session(gql, "s3", userId="u2")
    await add(gql, "s1", "a", "b", uuids=["m1", "m2"])
    await add(gql, "s2", "c", uuids=["m3"])
    kept = await add(gql, "s3", "d", uuids=["m4"])
    others_before = {
        "users": await stored(db, "users", user_id="u2"),
        "sessions": await stored(db, "sessions", session_id="s3"),
        "memories": await stored(db, "memories", session_id="s3"),
    }

    await delete_user(gql, "u1")

    assert (await stored_one(db, "users", user_id="u1"))["deleted_ms"] > 0
    for session_id in ("s1", "s2"):
        assert (await stored_one(db, "sessions", session_id=session_id))["deleted_ms"] > 0
    for uuid in ("m1", "m2", "m3"):
        assert (await stored_one(db, "memories", uuid=uuid))["deleted_ms"] > 0
    # invisible everywhere
    assert await get_user(gql, "u1") is None
    assert await get_node(gql, user["id"]) is None
    assert await get_session(gql, "s1") is None
    assert await get_session(gql, "s2") is None
    assert await get_memory(gql, "m1") is None
    assert await get_memory(gql, "m3") is None
    assert await list_users(gql) == (1, ["u2"])
    assert await list_sessions(gql) == (1, ["s3"])
    assert await list_sessions(gql, "u1") == (0, [])
    # the other user is untouched
    assert {
        "users": await stored(db, "users", user_id="u2"),
        "sessions": await stored(db, "sessions", session_id="s3"),
        "memories": await stored(db, "memories", session_id="s3"),
    } == others_before
    assert await get_memory(gql, "m4") == kept["memories"][0]


@pytest.mark.parametrize("state", ["missing", "deleted"])
async def test_delete_user_not_found(gql: GraphQLClient, db: Db, state: str) -> None:
    if state == "deleted":
        await create_user(gql, "u1")
        await create_session(gql, "s1", userId="u1")
        await delete_user(gql, "u1")
    before = await snapshot(db)

    error = await gql.error(DELETE_USER, {"id": "u1"})

    assert_code(error, "NOT_FOUND")
    assert await snapshot(db) == before


@pytest.mark.parametrize("soft_deleted_first", [False, True])
async def test_forget_user_erases_everything_of_theirs(
    gql: GraphQLClient, db: Db, soft_deleted_first: bool
) -> None:
    await create_user(gql, "u1", email="a@example.com")
    await create_user(gql, "u2")
    await add(gql, "s1", "a", "b", user_id="u1", uuids=["m1", "m2"])
    await add(gql, "s2", "c", user_id="u1", uuids=["m3"])
    await add(gql, "s3", "d", user_id="u2", uuids=["m4"])
    await add(gql, "s4", "e", uuids=["m5"])  # a session without a user
    await gql.ok('mutation { deleteMemory(uuid: "m2") { deleted } }')
    await delete_session(gql, "s2")
    if soft_deleted_first:
        await delete_user(gql, "u1")
    others_before = await snapshot(db)
    for name in others_before:
        others_before[name] = [
            d
            for d in others_before[name]
            if d.get("user_id") != "u1" and d.get("session_id") not in {"s1", "s2"}
        ]

    assert await gql.ok(FORGET_USER, {"id": "u1"}) == {"forgetUser": {"deleted": True}}

    assert await stored(db, "users", user_id="u1") == []
    assert await stored(db, "sessions", user_id="u1") == []
    for session_id in ("s1", "s2"):
        assert await stored(db, "sessions", session_id=session_id) == []
        assert await stored(db, "memories", session_id=session_id) == []
    assert await snapshot(db) == others_before
    assert await get_user(gql, "u1") is None
    assert await get_session(gql, "s1") is None
    assert await get_memory(gql, "m1") is None
    assert await list_users(gql) == (1, ["u2"])
    assert await list_sessions(gql) == (2, ["s3", "s4"])
    # nothing left to forget
    assert_code(await gql.error(FORGET_USER, {"id": "u1"}), "NOT_FOUND")
