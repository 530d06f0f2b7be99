"""The repositories called directly, without GraphQL: what each function returns, and that it
is what is stored (``users``, ``sessions``, ``memories`` on this test's database, with the
app's indexes, which the uniqueness rules rely on)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from memvault.db import memories, sessions, users
from memvault.db.indexes import ensure_indexes
from memvault.db.memories import NewMemory
from memvault.db.merge import MetadataPatch
from memvault.db.queries import Window, key_after
from memvault.db.records import MemoryRead, SessionRead, UserRead, read_fields
from memvault.errors import AlreadyExists, Conflict, NotFound
from tests.support.documents import check_session, stored, stored_one
from tests.support.graphql import snapshot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from pymongo.asynchronous.database import AsyncDatabase

    Db = AsyncDatabase[dict[str, Any]]

P = "acme"
OTHER = "other"


@pytest_asyncio.fixture(loop_scope="session")
async def repo(db: Db, embedded: bool) -> AsyncIterator[Db]:
    """This test's database with the app's indexes."""
    await ensure_indexes(db, embedded=embedded)
    yield db


def patch(changes: dict[str, Any]) -> MetadataPatch:
    """A metadata patch without limits (the API checks them; these tests are about storage)."""
    return MetadataPatch(changes, check=lambda merged: None)


def projected(doc: Mapping[str, Any], record: type) -> dict[str, Any]:
    """The ``*Read`` fields of a document: what a read for the API returns of a stored one
    (``_id`` aside, which batched reads may return in another form)."""
    return {k: v for k, v in doc.items() if k in read_fields(record)}


async def new_user(db: Db, user_id: str, project: str = P, **fields: Any) -> dict[str, Any]:
    metadata = fields.pop("metadata", None)
    doc = await users.create_user(
        db, project_id=project, user_id=user_id, fields=fields, metadata=metadata
    )
    return dict(doc)


async def append(
    db: Db, session_id: str, *uuids: str, user_id: str | None = None
) -> memories.Appended:
    batch = [NewMemory(role_type="USER", content=f"{session_id}/{u}", uuid=u) for u in uuids]
    return await memories.add_memories(
        db, project_id=P, session_id=session_id, user_id=user_id, memories=batch
    )


# ---------------------------------------------------------------------------------------------
# users


async def test_create_user_returns_what_it_stores(repo: Db) -> None:
    doc = await new_user(repo, "u1", email="ada@example.com", metadata={"lang": "en"})

    assert doc == await stored_one(repo, "users", user_id="u1")
    assert doc["project_id"] == P
    assert (doc["email"], doc["first_name"], doc["last_name"]) == ("ada@example.com", None, None)
    assert doc["metadata"] == {"lang": "en"}
    assert doc["created_ms"] == doc["updated_ms"] > 0
    assert doc["order_key"] == f"{doc['created_ms']:013d}u1"
    assert (doc["deleted_ms"], doc["deletion_id"], doc["version"]) == (0, "", 1)


async def test_create_user_of_a_live_id_is_refused_and_writes_nothing(repo: Db) -> None:
    await new_user(repo, "u1", email="first@example.com")
    before = await snapshot(repo)

    with pytest.raises(AlreadyExists):
        await new_user(repo, "u1", email="second@example.com")

    assert await snapshot(repo) == before


async def test_get_user_sees_only_live_users_of_the_project(repo: Db) -> None:
    mine = await new_user(repo, "u1")
    await new_user(repo, "u1", project=OTHER, email="theirs@example.com")
    await new_user(repo, "gone")
    await users.delete_user(repo, project_id=P, user_id="gone")

    assert await users.get_user(repo, project_id=P, user_id="u1") == mine
    assert await users.get_user(repo, project_id=P, user_id="gone") is None
    assert await users.get_user(repo, project_id=P, user_id="never") is None
    found = await users.get_users(repo, project_id=P, user_ids=["u1", "gone", "never", "u1"])
    assert {k: projected(v, UserRead) for k, v in found.items()} == {
        "u1": projected(mine, UserRead)
    }


async def test_users_are_listed_in_windows_and_counted(repo: Db) -> None:
    made = [await new_user(repo, f"u{i}", metadata={"even": i % 2 == 0}) for i in range(5)]
    await new_user(repo, "u9", project=OTHER)
    await users.delete_user(repo, project_id=P, user_id="u4")
    live = [projected(doc, UserRead) for doc in made[:4]]
    listing = users.user_filter(project_id=P)

    first = await listing.rows(repo, Window(limit=3))
    rest = await listing.rows(repo, Window(gte=key_after(first[-1]["order_key"]), limit=3))
    last_two = await listing.rows(repo, Window(descending=True, limit=2))

    assert [projected(doc, UserRead) for doc in [*first, *rest]] == live
    assert [projected(doc, UserRead) for doc in last_two] == [live[3], live[2]]
    assert await listing.count(repo) == 4
    evens = users.user_filter(project_id=P, metadata={"even": True})
    assert [d["user_id"] for d in await evens.rows(repo, Window())] == [
        "u0",
        "u2",
    ]
    assert await evens.count(repo) == 2
    after_u1 = users.user_filter(project_id=P, created_after_ms=made[1]["created_ms"])
    assert all(
        d["created_ms"] > made[1]["created_ms"] for d in await after_u1.rows(repo, after_u1.keys)
    )


async def test_upsert_and_update_user_set_fields_and_merge_metadata(repo: Db) -> None:
    created = await users.upsert_user(
        repo, project_id=P, user_id="u1", fields={"email": "a@example.com"}, metadata=None
    )
    assert created == await stored_one(repo, "users", user_id="u1")

    merged = await users.upsert_user(
        repo,
        project_id=P,
        user_id="u1",
        fields={"first_name": "Ada"},
        metadata=patch({"a": {"b": 1, "c": 2}, "d": 3}),
    )
    updated = await users.update_user(
        repo, project_id=P, user_id="u1", fields={"email": None}, metadata=patch({"a": {"c": None}})
    )

    assert merged["email"] == "a@example.com"  # not given: kept
    assert merged["first_name"] == "Ada"
    assert merged["version"] == created["version"] + 1
    assert updated == await stored_one(repo, "users", user_id="u1")
    assert (updated["email"], updated["first_name"]) == (None, "Ada")
    assert updated["metadata"] == {"a": {"b": 1}, "d": 3}
    assert updated["version"] == created["version"] + 2
    assert updated["updated_ms"] >= merged["updated_ms"] >= created["created_ms"]
    assert updated["created_ms"] == created["created_ms"]


async def test_update_user_of_a_deleted_user_is_not_found_but_upsert_revives_it(
    repo: Db,
) -> None:
    await new_user(repo, "u1", metadata={"keep": 1})
    await users.delete_user(repo, project_id=P, user_id="u1")
    before = await snapshot(repo)

    with pytest.raises(NotFound):
        await users.update_user(repo, project_id=P, user_id="u1", fields={}, metadata=None)
    assert await snapshot(repo) == before

    revived = await users.upsert_user(
        repo, project_id=P, user_id="u1", fields={}, metadata=patch({"new": 2})
    )
    assert (revived["deleted_ms"], revived["deletion_id"]) == (0, "")
    assert revived["metadata"] == {"keep": 1, "new": 2}
    assert revived == await stored_one(repo, "users", user_id="u1")


async def test_delete_user_soft_deletes_their_sessions_and_memories_with_one_token(
    repo: Db,
) -> None:
    await new_user(repo, "u1")
    await append(repo, "s1", "m1", "m2", user_id="u1")
    await append(repo, "s2", "m3", user_id="u1")
    await append(repo, "s-free", "m4")

    await users.delete_user(repo, project_id=P, user_id="u1")

    user = await stored_one(repo, "users", user_id="u1")
    assert user["deleted_ms"] > 0
    token = user["deletion_id"]
    assert token
    for sid in ("s1", "s2"):
        session = await stored_one(repo, "sessions", session_id=sid)
        assert (session["deletion_id"], session["memory_count"]) == (token, 0)
    taken = await stored(repo, "memories", deletion_id=token)
    assert sorted(doc["uuid"] for doc in taken) == ["m1", "m2", "m3"]
    assert (await stored_one(repo, "memories", uuid="m4"))["deleted_ms"] == 0
    with pytest.raises(NotFound):
        await users.delete_user(repo, project_id=P, user_id="u1")


async def test_forget_user_erases_everything_of_the_user_live_or_deleted(repo: Db) -> None:
    await new_user(repo, "u1")
    await new_user(repo, "u1", project=OTHER)
    await append(repo, "s1", "m1", "m2", user_id="u1")
    await append(repo, "s2", "m3", user_id="u1")
    await sessions.delete_session(repo, project_id=P, session_id="s2")

    erased = await users.forget_user(repo, project_id=P, user_id="u1")

    assert erased == {"memories": 3, "sessions": 2, "users": 1}
    assert await stored(repo, "users", project_id=P) == []
    assert await stored(repo, "sessions", project_id=P) == []
    assert await stored(repo, "memories", project_id=P) == []
    assert len(await stored(repo, "users", project_id=OTHER)) == 1
    with pytest.raises(NotFound):
        await users.forget_user(repo, project_id=P, user_id="u1")


# ---------------------------------------------------------------------------------------------
# sessions


async def test_create_session_returns_what_it_stores_and_needs_a_live_user(repo: Db) -> None:
    before = await snapshot(repo)
    with pytest.raises(NotFound):
        await sessions.create_session(
            repo, project_id=P, session_id="s1", user_id="nobody", metadata=None
        )
    assert await snapshot(repo) == before

    await new_user(repo, "u1")
    doc = await sessions.create_session(
        repo, project_id=P, session_id="s1", user_id="u1", metadata={"topic": "x"}
    )
    free = await sessions.create_session(
        repo, project_id=P, session_id="s2", user_id=None, metadata=None
    )

    assert doc == await stored_one(repo, "sessions", session_id="s1")
    assert (doc["user_id"], doc["metadata"], doc["memory_count"], doc["next_seq"]) == (
        "u1",
        {"topic": "x"},
        0,
        0,
    )
    assert free["user_id"] == ""  # no user: "", never null
    with pytest.raises(AlreadyExists):
        await sessions.create_session(
            repo, project_id=P, session_id="s1", user_id=None, metadata=None
        )


async def test_a_recreated_session_keeps_counting_seq(repo: Db) -> None:
    await append(repo, "s1", "m1", "m2")
    await sessions.delete_session(repo, project_id=P, session_id="s1")

    fresh = await sessions.create_session(
        repo, project_id=P, session_id="s1", user_id=None, metadata=None
    )
    added = await append(repo, "s1", "m3")

    assert (fresh["deleted_ms"], fresh["memory_count"], fresh["next_seq"]) == (0, 0, 2)
    assert [m["seq"] for m in added.memories] == [3]


async def test_sessions_are_listed_in_windows_per_user_and_counted(repo: Db) -> None:
    await new_user(repo, "u1")
    await new_user(repo, "u2")
    for sid, owner in [("a", "u1"), ("b", "u2"), ("c", "u1"), ("d", None), ("e", "u1")]:
        await sessions.create_session(
            repo, project_id=P, session_id=sid, user_id=owner, metadata={"owner": owner}
        )
    await sessions.delete_session(repo, project_id=P, session_id="e")
    everyone = sessions.session_filter(project_id=P)
    of_u1 = sessions.session_filter(project_id=P, user_id="u1")

    first = await everyone.rows(repo, Window(limit=2))
    rest = await everyone.rows(repo, Window(gte=key_after(first[-1]["order_key"])))
    per_user = await sessions.list_sessions_of_users(
        repo, project_id=P, user_ids=["u1", "u2", "nobody"], window=Window(limit=10)
    )

    assert [d["session_id"] for d in [*first, *rest]] == ["a", "b", "c", "d"]
    stored_a = await stored_one(repo, "sessions", session_id="a")
    assert projected(first[0], SessionRead) == projected(stored_a, SessionRead)
    assert await everyone.count(repo) == 4
    assert [d["session_id"] for d in await of_u1.rows(repo, Window())] == [
        "a",
        "c",
    ]
    assert {user: [d["session_id"] for d in docs] for user, docs in per_user.items() if docs} == {
        "u1": ["a", "c"],
        "u2": ["b"],
    }
    assert await sessions.count_sessions_of_users(
        repo, project_id=P, user_ids=["u1", "u2", "nobody"]
    ) == {"u1": 2, "u2": 1, "nobody": 0}
    got = await sessions.get_sessions(repo, project_id=P, session_ids=["a", "e", "zz"])
    assert {k: projected(v, SessionRead) for k, v in got.items()} == {
        "a": projected(stored_a, SessionRead)
    }


async def test_ensure_session_attaches_a_user_once_and_refuses_another(repo: Db) -> None:
    await new_user(repo, "u1")
    await new_user(repo, "u2")
    await sessions.ensure_session(repo, project_id=P, session_id="s1", user_id=None)

    attached = await sessions.ensure_session(repo, project_id=P, session_id="s1", user_id="u1")
    again = await sessions.ensure_session(repo, project_id=P, session_id="s1", user_id=None)
    before = await snapshot(repo)
    with pytest.raises(Conflict):
        await sessions.ensure_session(repo, project_id=P, session_id="s1", user_id="u2")

    assert attached["user_id"] == again["user_id"] == "u1"
    assert attached == await stored_one(repo, "sessions", session_id="s1")
    assert await snapshot(repo) == before


async def test_update_session_merges_metadata_of_live_sessions_only(repo: Db) -> None:
    await sessions.create_session(
        repo, project_id=P, session_id="s1", user_id=None, metadata={"a": 1, "b": {"c": 2}}
    )

    updated = await sessions.update_session(
        repo, project_id=P, session_id="s1", metadata=patch({"a": None, "b": {"d": 3}})
    )

    assert updated["metadata"] == {"b": {"c": 2, "d": 3}}
    assert updated == await stored_one(repo, "sessions", session_id="s1")
    await sessions.delete_session(repo, project_id=P, session_id="s1")
    before = await snapshot(repo)
    with pytest.raises(NotFound):
        await sessions.update_session(repo, project_id=P, session_id="s1", metadata=patch({}))
    assert await snapshot(repo) == before


async def test_restore_session_brings_back_exactly_what_its_deletion_took(repo: Db) -> None:
    await append(repo, "s1", "m1", "m2", "m3")
    await memories.delete_memory(repo, project_id=P, uuid="m2")  # before: stays deleted

    await sessions.delete_session(repo, project_id=P, session_id="s1")
    deleted = await stored_one(repo, "sessions", session_id="s1")
    restored = await sessions.restore_session(repo, project_id=P, session_id="s1")

    assert deleted["deleted_ms"] > 0
    assert deleted["memory_count"] == 0
    assert restored == await stored_one(repo, "sessions", session_id="s1")
    assert (restored["deleted_ms"], restored["deletion_id"], restored["memory_count"]) == (0, "", 2)
    live = await stored(repo, "memories", session_id="s1", deleted_ms=0)
    assert sorted(doc["uuid"] for doc in live) == ["m1", "m3"]
    await check_session(repo, "s1", [["m1", "m3"]], project=P)
    with pytest.raises(NotFound):
        await sessions.restore_session(repo, project_id=P, session_id="never")


async def test_restore_session_of_a_deleted_user_is_a_conflict(repo: Db) -> None:
    await new_user(repo, "u1")
    await append(repo, "s1", "m1", user_id="u1")
    await users.delete_user(repo, project_id=P, user_id="u1")
    before = await snapshot(repo)

    with pytest.raises(Conflict):
        await sessions.restore_session(repo, project_id=P, session_id="s1")

    assert await snapshot(repo) == before


# ---------------------------------------------------------------------------------------------
# memories


async def test_add_memories_numbers_in_order_and_returns_what_it_stores(repo: Db) -> None:
    first = await append(repo, "s1", "m1", "m2", "m3")
    second = await append(repo, "s1", "m4")

    assert [m["uuid"] for m in first.memories] == ["m1", "m2", "m3"]
    assert [m["seq"] for m in [*first.memories, *second.memories]] == [1, 2, 3, 4]
    assert (first.inserted, second.inserted) == (3, 1)
    for memory in [*first.memories, *second.memories]:
        assert memory == await stored_one(repo, "memories", uuid=memory["uuid"])
        assert memory["seq_key"] == memories.seq_key(P, "s1", memory["seq"])
    assert second.session == await stored_one(repo, "sessions", session_id="s1")
    assert (second.session["memory_count"], second.session["next_seq"]) == (4, 4)
    await check_session(repo, "s1", [["m1", "m2", "m3"], ["m4"]], project=P)


async def test_add_memories_is_idempotent_by_uuid(repo: Db) -> None:
    original = await append(repo, "s1", "m1", "m2")
    retried = await append(repo, "s1", "m1", "m2")
    extended = await append(repo, "s1", "m1", "m2", "m3")

    assert retried.memories == original.memories
    assert retried.inserted == 0
    assert extended.memories[:2] == original.memories
    assert (extended.inserted, extended.memories[2]["seq"]) == (1, 3)
    assert extended.session["memory_count"] == 3
    assert len(await stored(repo, "memories", session_id="s1")) == 3
    await check_session(repo, "s1", [["m1", "m2", "m3"]], project=P)


async def test_add_memories_with_a_uuid_of_another_session_writes_nothing(repo: Db) -> None:
    await append(repo, "s1", "m1")
    before = await snapshot(repo)

    with pytest.raises(Conflict):
        await append(repo, "s2", "m-new", "m1")

    assert await snapshot(repo) == before


async def test_a_deleted_memory_is_neither_stored_again_nor_returned(repo: Db) -> None:
    await append(repo, "s1", "m1", "m2")
    await memories.delete_memory(repo, project_id=P, uuid="m1")
    deleted = await stored_one(repo, "memories", uuid="m1")

    retried = await append(repo, "s1", "m1", "m2")

    assert [m["uuid"] for m in retried.memories] == ["m2"]
    assert await stored_one(repo, "memories", uuid="m1") == deleted
    assert (await stored_one(repo, "sessions", session_id="s1"))["memory_count"] == 1
    with pytest.raises(NotFound):
        await memories.delete_memory(repo, project_id=P, uuid="m1")


async def test_update_memory_sets_content_and_merges_metadata(repo: Db) -> None:
    await memories.add_memories(
        repo,
        project_id=P,
        session_id="s1",
        user_id=None,
        memories=[NewMemory(role_type="USER", content="hi", uuid="m1", metadata={"a": 1})],
    )

    updated = await memories.update_memory(
        repo, project_id=P, uuid="m1", content="hello", metadata=patch({"b": 2})
    )
    unchanged_content = await memories.update_memory(
        repo, project_id=P, uuid="m1", content=None, metadata=patch({"a": None})
    )

    assert (updated["content"], updated["metadata"]) == ("hello", {"a": 1, "b": 2})
    assert (unchanged_content["content"], unchanged_content["metadata"]) == ("hello", {"b": 2})
    assert unchanged_content == await stored_one(repo, "memories", uuid="m1")
    await memories.delete_memory(repo, project_id=P, uuid="m1")
    with pytest.raises(NotFound):
        await memories.update_memory(repo, project_id=P, uuid="m1", content="x", metadata=None)


async def test_memories_are_read_in_windows_of_seq(repo: Db) -> None:
    await append(repo, "s1", *(f"a{i}" for i in range(6)))
    await append(repo, "s2", "b0", "b1")
    await memories.delete_memory(repo, project_id=P, uuid="a2")

    windows = await memories.list_memories_of_sessions(
        repo, project_id=P, session_ids=["s1", "s2", "none"], window=Window(gte=2, lt=6, limit=2)
    )
    last = await memories.list_memories_of_sessions(
        repo, project_id=P, session_ids=["s1"], window=Window(descending=True, limit=2)
    )
    session, window = await memories.session_with_memories(
        repo, project_id=P, session_id="s1", window=Window(limit=3)
    )
    missing, nothing = await memories.session_with_memories(
        repo, project_id=P, session_id="none", window=Window()
    )
    found = await memories.get_memories(repo, project_id=P, uuids=["a0", "a2", "b1", "zz"])

    assert [m["uuid"] for m in windows["s1"]] == ["a1", "a3"]  # seq 2, 4 (3 is deleted)
    assert [m["uuid"] for m in windows["s2"]] == ["b1"]
    assert not windows.get("none")
    assert [m["uuid"] for m in last["s1"]] == ["a5", "a4"]
    assert session is not None
    stored_s1 = await stored_one(repo, "sessions", session_id="s1")
    assert projected(session, SessionRead) == projected(stored_s1, SessionRead)
    assert [m["seq"] for m in window] == [1, 2, 4]
    assert (missing, nothing) == (None, [])
    assert sorted(found) == ["a0", "b1"]
    a0 = await stored_one(repo, "memories", uuid="a0")
    assert projected(found["a0"], MemoryRead) == projected(a0, MemoryRead)
