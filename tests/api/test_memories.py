"""Memories: addMemories, updateMemory, deleteMemory (DESIGN.md "Semantics"), stored and served."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from datetime import datetime
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.documents import (
    DELETE_MEMORY,
    UPDATE_MEMORY,
    add,
    add_error,
    assert_code,
    assert_count,
    create_session,
    create_user,
    delete_memory,
    delete_session,
    get_memory,
    get_node,
    get_session,
    live_uuids,
    memory_inputs,
    stored,
    stored_one,
    update_memory,
)
from tests.support.graphql import GraphQLClient, snapshot

Db = AsyncDatabase[dict[str, Any]]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_add_memories_creates_missing_session(gql: GraphQLClient, db: Db) -> None:
    payload = await add(
        gql,
        "s1",
        "hello",
        uuids=["m1"],
        role="alice",
        metadata={"lang": "en"},
        tokenCount=3,
    )

    assert payload["session"]["sessionId"] == "s1"
    assert payload["session"]["userId"] is None
    assert payload["session"]["memoryCount"] == 1
    (memory,) = payload["memories"]
    assert memory["uuid"] == "m1"
    assert (memory["role"], memory["roleType"], memory["content"]) == ("alice", "USER", "hello")
    assert (memory["metadata"], memory["tokenCount"]) == ({"lang": "en"}, 3)
    assert memory["session"] == {"sessionId": "s1"}
    assert ISO_MS.match(memory["createdAt"])

    session = await stored_one(db, "sessions", session_id="s1")
    assert (session["project_id"], session["user_id"], session["deleted_ms"]) == ("default", "", 0)
    assert (session["memory_count"], session["next_seq"]) == (1, memory["seq"])
    doc = await stored_one(db, "memories", uuid="m1")
    assert doc["project_id"] == "default"
    assert (doc["session_id"], doc["seq"], doc["role_type"]) == ("s1", memory["seq"], "user")
    assert (doc["role"], doc["content"], doc["metadata"], doc["token_count"]) == (
        "alice",
        "hello",
        {"lang": "en"},
        3,
    )
    assert doc["deleted_ms"] == 0
    assert isinstance(doc["created_ms"], int)
    assert abs(doc["created_ms"] - time.time() * 1000) < 60_000
    await assert_count(gql, db, "s1", 1)


async def test_add_memories_with_user(gql: GraphQLClient, db: Db) -> None:
    await create_user(gql, "u1")
    await create_user(gql, "u2")
    await create_session(gql, "s2")

    payload = await add(gql, "s1", "hi", user_id="u1")
    assert payload["session"]["userId"] == "u1"
    assert (await stored_one(db, "sessions", session_id="s1"))["user_id"] == "u1"
    # an existing session without a user gains one
    payload = await add(gql, "s2", "hi", user_id="u2")
    assert payload["session"]["userId"] == "u2"
    assert (await stored_one(db, "sessions", session_id="s2"))["user_id"] == "u2"

    # moving a session to another user is a CONFLICT, and nothing is written
    before = await snapshot(db)
    error = await add_error(gql, "s1", memory_inputs("x", uuids=["m9"]), user_id="u2")
    assert_code(error, "CONFLICT")
    assert await snapshot(db) == before


@pytest.mark.parametrize("user_state", ["missing", "deleted"])
async def test_add_memories_user_must_exist(gql: GraphQLClient, db: Db, user_state: str) -> None:
    if user_state == "deleted":
        await create_user(gql, "u1")
        await gql.ok('mutation { deleteUser(userId: "u1") { deleted } }')
    before = await snapshot(db)

    error = await add_error(gql, "s1", memory_inputs("hi", uuids=["m1"]), user_id="u1")

    assert_code(error, "NOT_FOUND")
    assert await snapshot(db) == before
    assert await stored(db, "sessions", session_id="s1") == []
    assert await stored(db, "memories", uuid="m1") == []


async def test_add_memories_revives_deleted_session_memories_stay_deleted(
    gql: GraphQLClient, db: Db
) -> None:
    await add(gql, "s1", "a", "b", uuids=["m1", "m2"])
    await delete_session(gql, "s1")

    payload = await add(gql, "s1", "c", uuids=["m3"])

    assert payload["session"]["memoryCount"] == 1
    assert [m["uuid"] for m in payload["memories"]] == ["m3"]
    assert (await stored_one(db, "sessions", session_id="s1"))["deleted_ms"] == 0
    for uuid in ("m1", "m2"):
        assert (await stored_one(db, "memories", uuid=uuid))["deleted_ms"] > 0
        assert await get_memory(gql, uuid) is None
    assert await live_uuids(gql, "s1") == ["m3"]
    await assert_count(gql, db, "s1", 1)


async def test_add_memories_appends_in_order_with_increasing_seq(
    gql: GraphQLClient, db: Db
) -> None:
    first = await add(gql, "s1", "one", "two", "three")
    second = await add(gql, "s1", "four", "five")

    memories = first["memories"] + second["memories"]
    assert [m["content"] for m in memories] == ["one", "two", "three", "four", "five"]
    seqs = [m["seq"] for m in memories]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    session = await get_session(gql, "s1")
    assert session is not None
    assert [n["content"] for n in session["memories"]["nodes"]] == [
        "one",
        "two",
        "three",
        "four",
        "five",
    ]
    docs = sorted(await stored(db, "memories", session_id="s1"), key=lambda d: d["seq"])
    assert [(d["content"], d["seq"]) for d in docs] == [(m["content"], m["seq"]) for m in memories]
    assert len({m["uuid"] for m in memories}) == 5  # generated uuids are distinct
    await assert_count(gql, db, "s1", 5)


async def test_add_memories_is_idempotent_by_uuid(gql: GraphQLClient, db: Db) -> None:
    first = await add(gql, "s1", "a", "b", uuids=["m1", "m2"])

    retry = await add(gql, "s1", "a", "b", uuids=["m1", "m2"])
    assert retry["memories"] == first["memories"]
    assert retry["session"]["memoryCount"] == 2

    # a partial retry: the stored memory comes back as stored, the new one is appended
    mixed = await add(gql, "s1", "changed", "c", uuids=["m2", "m3"])
    assert mixed["memories"][0] == first["memories"][1]
    assert mixed["memories"][1]["uuid"] == "m3"
    assert mixed["memories"][1]["seq"] > first["memories"][1]["seq"]
    assert mixed["session"]["memoryCount"] == 3

    for uuid in ("m1", "m2", "m3"):
        assert len(await stored(db, "memories", uuid=uuid)) == 1
    assert (await stored_one(db, "memories", uuid="m2"))["content"] == "b"
    assert await live_uuids(gql, "s1") == ["m1", "m2", "m3"]
    await assert_count(gql, db, "s1", 3)


async def test_add_memories_deleted_uuid_is_neither_stored_nor_returned(
    gql: GraphQLClient, db: Db
) -> None:
    await add(gql, "s1", "a", "b", uuids=["m1", "m2"])
    await delete_memory(gql, "m1")

    payload = await add(gql, "s1", "a again", "c", uuids=["m1", "m3"])

    assert [m["uuid"] for m in payload["memories"]] == ["m3"]
    assert payload["session"]["memoryCount"] == 2
    m1 = await stored_one(db, "memories", uuid="m1")
    assert (m1["deleted_ms"] > 0, m1["content"]) == (True, "a")
    assert await get_memory(gql, "m1") is None
    assert await live_uuids(gql, "s1") == ["m2", "m3"]
    await assert_count(gql, db, "s1", 2)

    # a call made only of a deleted uuid returns nothing and writes no memory
    only = await add(gql, "s1", "a", uuids=["m1"])
    assert only["memories"] == []
    assert len(await stored(db, "memories", session_id="s1")) == 3
    await assert_count(gql, db, "s1", 2)


@pytest.mark.parametrize("target", ["missing", "live", "deleted"])
async def test_add_memories_uuid_of_another_session_is_conflict(
    gql: GraphQLClient, db: Db, target: str
) -> None:
    await add(gql, "other", "x", uuids=["taken"])
    if target != "missing":
        await add(gql, "s1", "a", uuids=["m1"])
    if target == "deleted":
        await delete_session(gql, "s1")
    before = await snapshot(db)

    error = await add_error(gql, "s1", memory_inputs("new", "dup", uuids=["fresh", "taken"]))

    assert_code(error, "CONFLICT")
    assert await snapshot(db) == before
    assert await stored(db, "memories", uuid="fresh") == []
    if target == "missing":
        assert await stored(db, "sessions", session_id="s1") == []
    assert len(await stored(db, "memories", uuid="taken")) == 1


async def test_add_memories_duplicate_uuids_in_one_call(gql: GraphQLClient, db: Db) -> None:
    await add(gql, "s1", "a", uuids=["m1"])
    before = await snapshot(db)

    error = await add_error(gql, "s1", memory_inputs("x", "y", "z", uuids=["m2", "m3", "m2"]))

    assert_code(error, "BAD_USER_INPUT")
    assert await snapshot(db) == before
    error = await add_error(gql, "s2", memory_inputs("x", "y", uuids=["n", "n"]))
    assert_code(error, "BAD_USER_INPUT")
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("2024-02-29T10:20:30.123456+02:00", "2024-02-29T08:20:30.123Z"),
        ("2001-01-01T00:00:00Z", "2001-01-01T00:00:00.000Z"),
        ("2020-06-15T23:59:59.999", "2020-06-15T23:59:59.999Z"),
    ],
)
async def test_add_memories_created_at_may_be_given(
    gql: GraphQLClient, db: Db, given: str, shown: str
) -> None:
    payload = await add(gql, "s1", "imported", uuids=["m1"], createdAt=given)

    assert payload["memories"][0]["createdAt"] == shown
    memory = await get_memory(gql, "m1")
    assert memory is not None
    assert memory["createdAt"] == shown
    doc = await stored_one(db, "memories", uuid="m1")
    expected_ms = int(datetime.fromisoformat(shown.replace("Z", "+00:00")).timestamp() * 1000)
    assert doc["created_ms"] == expected_ms


async def test_update_memory_content_and_metadata(gql: GraphQLClient, db: Db) -> None:
    original = (await add(gql, "s1", "v1", uuids=["m1"], metadata={"a": 1, "b": {"c": 1}}))[
        "memories"
    ][0]

    content_only = await update_memory(gql, "m1", content="v2")
    assert (content_only["content"], content_only["metadata"]) == ("v2", {"a": 1, "b": {"c": 1}})
    metadata_only = await update_memory(gql, "m1", metadata={"b": {"d": 2}, "a": None})
    assert (metadata_only["content"], metadata_only["metadata"]) == ("v2", {"b": {"c": 1, "d": 2}})
    both = await update_memory(gql, "m1", content="v3", metadata={"e": [1]})
    assert (both["content"], both["metadata"]) == ("v3", {"b": {"c": 1, "d": 2}, "e": [1]})
    assert (both["seq"], both["createdAt"]) == (original["seq"], original["createdAt"])

    doc = await stored_one(db, "memories", uuid="m1")
    assert (doc["content"], doc["metadata"]) == ("v3", {"b": {"c": 1, "d": 2}, "e": [1]})
    assert doc["updated_ms"] >= doc["created_ms"]
    assert await get_memory(gql, "m1") == both
    await assert_count(gql, db, "s1", 1)


@pytest.mark.parametrize("state", ["missing", "deleted", "session_deleted"])
async def test_update_memory_not_found(gql: GraphQLClient, db: Db, state: str) -> None:
    if state != "missing":
        await add(gql, "s1", "v1", uuids=["m1"])
    if state == "deleted":
        await delete_memory(gql, "m1")
    if state == "session_deleted":
        await delete_session(gql, "s1")
    before = await snapshot(db)

    error = await gql.error(
        UPDATE_MEMORY, {"input": {"uuid": "m1", "content": "v2", "metadata": {"a": 1}}}
    )

    assert_code(error, "NOT_FOUND")
    assert await snapshot(db) == before


async def test_delete_memory_is_soft_and_counted(gql: GraphQLClient, db: Db) -> None:
    await add(gql, "s1", "a", "b", "c", uuids=["m1", "m2", "m3"])

    await delete_memory(gql, "m2")

    doc = await stored_one(db, "memories", uuid="m2")
    assert doc["deleted_ms"] > 0
    assert doc["content"] == "b"
    assert await live_uuids(gql, "s1") == ["m1", "m3"]
    await assert_count(gql, db, "s1", 2)

    before = await snapshot(db)
    assert_code(await gql.error(DELETE_MEMORY, {"uuid": "m2"}), "NOT_FOUND")
    assert_code(await gql.error(DELETE_MEMORY, {"uuid": "never"}), "NOT_FOUND")
    assert await snapshot(db) == before
    await assert_count(gql, db, "s1", 2)


async def test_memory_and_node_are_null_when_deleted(gql: GraphQLClient, db: Db) -> None:
    memories = (await add(gql, "s1", "a", "b", uuids=["m1", "m2"]))["memories"]
    assert await get_memory(gql, "m1") == memories[0]
    assert await get_node(gql, memories[0]["id"]) == {
        "id": memories[0]["id"],
        "__typename": "Memory",
    }

    await delete_memory(gql, "m1")

    assert await get_memory(gql, "m1") is None
    assert await get_node(gql, memories[0]["id"]) is None
    assert await get_memory(gql, "m2") == memories[1]
    assert await get_node(gql, memories[1]["id"]) is not None


@pytest.mark.parametrize("session_exists", [True, False])
async def test_concurrent_add_memories_keep_order_and_count(
    gql: GraphQLClient, db: Db, session_exists: bool
) -> None:
    if session_exists:
        await create_session(gql, "s1")
    calls = 20

    payloads = await asyncio.gather(
        *(add(gql, "s1", *(f"c{call}-{i}" for i in range(3))) for call in range(calls))
    )

    all_seqs: list[int] = []
    for call, payload in enumerate(payloads):
        memories = payload["memories"]
        assert [m["content"] for m in memories] == [f"c{call}-{i}" for i in range(3)]
        seqs = [m["seq"] for m in memories]
        assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
        all_seqs += seqs
    assert len(set(all_seqs)) == calls * 3
    docs = await stored(db, "memories", session_id="s1")
    assert len(docs) == calls * 3
    assert sorted(d["seq"] for d in docs) == sorted(all_seqs)
    assert len(await stored(db, "sessions", session_id="s1")) == 1
    await assert_count(gql, db, "s1", calls * 3)


async def test_concurrent_retries_store_each_uuid_once(gql: GraphQLClient, db: Db) -> None:
    await create_session(gql, "s1")
    uuids = [f"m{i}" for i in range(5)]
    contents = [f"text {i}" for i in range(5)]

    payloads = await asyncio.gather(*(add(gql, "s1", *contents, uuids=uuids) for _ in range(10)))

    for payload in payloads:
        assert [m["uuid"] for m in payload["memories"]] == uuids
        assert payload["memories"] == payloads[0]["memories"]
    seqs = [m["seq"] for m in payloads[0]["memories"]]
    assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
    for uuid in uuids:
        assert len(await stored(db, "memories", uuid=uuid)) == 1
    assert len(await stored(db, "memories", session_id="s1")) == 5
    await assert_count(gql, db, "s1", 5)
    assert await live_uuids(gql, "s1") == uuids


@pytest.mark.parametrize("role_type", ["USER", "ASSISTANT", "SYSTEM", "TOOL", "FUNCTION", "NOROLE"])
async def test_role_type_is_stored_lowercase(gql: GraphQLClient, db: Db, role_type: str) -> None:
    payload = await add(gql, "s1", "x", uuids=["m1"], role_type=role_type)

    assert payload["memories"][0]["roleType"] == role_type
    assert (await stored_one(db, "memories", uuid="m1"))["role_type"] == role_type.lower()
