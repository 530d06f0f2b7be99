"""Users: create, upsert, update, soft delete with cascade, erasure, listing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memvault.db.documents import (
    Doc,
    Window,
    count,
    find_by_keys,
    find_window,
    insert_fresh,
    new_token,
    now_ms,
    order_key,
    patch_document,
    view,
)
from memvault.db.merge import merge_patch
from memvault.errors import NotFound

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.db.merge import MetadataPatch

USER_FIELDS = ("email", "first_name", "last_name")
# Cascades touch sessions in batches of this many ids per command.
CASCADE_BATCH = 500


# What the API shows of a user; reads for GraphQL fetch only these fields.
USER_VIEW = view(
    "user_id", "email", "first_name", "last_name", "metadata", "order_key", "created_ms",
    "updated_ms",
)  # fmt: skip


def _users(db: AsyncDatabase[Doc]) -> AsyncCollection[Doc]:
    return db["users"]


def _fresh_user(
    *,
    project_id: str,
    user_id: str,
    fields: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
    now: int,
) -> Doc:
    return {
        "project_id": project_id,
        "user_id": user_id,
        **{name: fields.get(name) for name in USER_FIELDS},
        "metadata": merge_patch({}, dict(metadata or {})),
        "order_key": order_key(now, user_id),
        "created_ms": now,
        "updated_ms": now,
        "deleted_ms": 0,
        "deletion_id": "",
        "version": 1,
    }


async def get_user(db: AsyncDatabase[Doc], *, project_id: str, user_id: str) -> Doc | None:
    """The live user, or None."""
    return await _users(db).find_one(
        {"project_id": project_id, "user_id": user_id, "deleted_ms": 0}
    )


async def get_users(
    db: AsyncDatabase[Doc], *, project_id: str, user_ids: Sequence[str]
) -> dict[str, Doc]:
    """Live users by id, in one batch."""
    return await find_by_keys(
        _users(db),
        match={"project_id": project_id, "deleted_ms": 0},
        field="user_id",
        values=user_ids,
        projection=USER_VIEW,
    )


def user_filter(*, project_id: str, metadata: Mapping[str, Any] | None = None) -> Doc:
    """The flat filter for live users of a project whose top-level metadata keys equal the given."""
    match: Doc = {"project_id": project_id, "deleted_ms": 0}
    for key, value in (metadata or {}).items():
        match[f"metadata.{key}"] = value
    return match


async def list_users(
    db: AsyncDatabase[Doc], *, match: Mapping[str, Any], window: Window
) -> list[Doc]:
    return await find_window(
        _users(db), match=match, key_field="order_key", window=window, projection=USER_VIEW
    )


async def count_users(db: AsyncDatabase[Doc], *, match: Mapping[str, Any]) -> int:
    return await count(_users(db), match)


async def create_user(
    db: AsyncDatabase[Doc],
    *,
    project_id: str,
    user_id: str,
    fields: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
) -> Doc:
    """Create a user; a soft-deleted id starts over fresh, a live one is ALREADY_EXISTS."""
    now = now_ms()
    doc = _fresh_user(
        project_id=project_id, user_id=user_id, fields=fields, metadata=metadata, now=now
    )
    return await insert_fresh(
        _users(db),
        doc,
        key={"project_id": project_id, "user_id": user_id},
        what=f"user {user_id!r}",
        field="userId",
    )


async def upsert_user(
    db: AsyncDatabase[Doc],
    *,
    project_id: str,
    user_id: str,
    fields: Mapping[str, Any],
    metadata: MetadataPatch | None,
) -> Doc:
    """Create the user, or set the given fields and merge metadata (reviving a deleted user)."""
    now = now_ms()
    doc = _fresh_user(
        project_id=project_id, user_id=user_id, fields=fields, metadata=metadata, now=now
    )
    result = await _users(db).update_one(
        {"project_id": project_id, "user_id": user_id}, {"$setOnInsert": doc}, upsert=True
    )
    if result.upserted_id is not None:
        return {**doc, "_id": result.upserted_id}
    return await patch_document(
        _users(db),
        match={"project_id": project_id, "user_id": user_id},
        what=f"user {user_id!r}",
        set_fields=fields,
        metadata_patch=metadata,
        revive=True,
        now=now,
    )


async def update_user(
    db: AsyncDatabase[Doc],
    *,
    project_id: str,
    user_id: str,
    fields: Mapping[str, Any],
    metadata: MetadataPatch | None,
) -> Doc:
    """Set the given fields (None clears) and merge metadata; NOT_FOUND when missing or deleted."""
    return await patch_document(
        _users(db),
        match={"project_id": project_id, "user_id": user_id},
        what=f"user {user_id!r}",
        set_fields=fields,
        metadata_patch=metadata,
    )


async def delete_user(db: AsyncDatabase[Doc], *, project_id: str, user_id: str) -> None:
    """Soft-delete the user, their live sessions and those sessions' live memories."""
    now, token = now_ms(), new_token()
    deleted = await _users(db).find_one_and_update(
        {"project_id": project_id, "user_id": user_id, "deleted_ms": 0},
        {"$set": {"deleted_ms": now, "deletion_id": token}},
    )
    if deleted is None:
        raise NotFound(f"user {user_id!r} not found", field="userId")
    sessions = db["sessions"]
    await sessions.update_many(
        {"project_id": project_id, "user_id": user_id, "deleted_ms": 0},
        {
            "$set": {"deleted_ms": now, "deletion_id": token, "memory_count": 0},
            "$inc": {"deletions": 1},
        },
    )
    # Read back by token: a session created meanwhile was either caught above or stays live.
    cursor = sessions.find(
        {"project_id": project_id, "user_id": user_id, "deletion_id": token}, {"session_id": 1}
    )
    session_ids = [doc["session_id"] async for doc in cursor]
    for start in range(0, len(session_ids), CASCADE_BATCH):
        await db["memories"].update_many(
            {
                "project_id": project_id,
                "session_id": {"$in": session_ids[start : start + CASCADE_BATCH]},
                "deleted_ms": 0,
            },
            {"$set": {"deleted_ms": now, "deletion_id": token}},
        )


async def forget_user(db: AsyncDatabase[Doc], *, project_id: str, user_id: str) -> dict[str, int]:
    """Hard-delete the user, all their sessions and memories, live or soft-deleted."""
    found = await _users(db).find_one({"project_id": project_id, "user_id": user_id}, {"_id": 1})
    sessions = db["sessions"]
    cursor = sessions.find({"project_id": project_id, "user_id": user_id}, {"session_id": 1})
    session_ids = [doc["session_id"] async for doc in cursor]
    if found is None and not session_ids:
        raise NotFound(f"user {user_id!r} not found", field="userId")
    erased = {"memories": 0, "sessions": 0, "users": 0}
    for start in range(0, len(session_ids), CASCADE_BATCH):
        result = await db["memories"].delete_many(
            {
                "project_id": project_id,
                "session_id": {"$in": session_ids[start : start + CASCADE_BATCH]},
            }
        )
        erased["memories"] += result.deleted_count
    result = await sessions.delete_many({"project_id": project_id, "user_id": user_id})
    erased["sessions"] = result.deleted_count
    result = await _users(db).delete_many({"project_id": project_id, "user_id": user_id})
    erased["users"] = result.deleted_count
    return erased
