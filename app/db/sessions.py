"""Sessions: create, upsert, update, soft delete with cascade, restore, listing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from memvault.db.documents import (
    Doc,
    Window,
    count,
    find_by_keys,
    find_window,
    find_windows,
    insert_fresh,
    new_token,
    now_ms,
    order_key,
    patch_document,
    view,
)
from memvault.db.merge import merge_patch
from memvault.db.users import get_user
from memvault.errors import Conflict, NotFound

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.db.merge import MetadataPatch

NO_USER = ""  # sessions without a user store "" (never null: null matching is unreliable)


# What the API shows of a session; reads for GraphQL fetch only these fields.
SESSION_VIEW = view(
    "session_id", "user_id", "metadata", "order_key", "created_ms", "updated_ms", "memory_count"
)


def _sessions(db: AsyncDatabase[Doc]) -> AsyncCollection[Doc]:
    return db["sessions"]


def _fresh_session(
    *,
    project_id: str,
    session_id: str,
    user_id: str | None,
    metadata: Mapping[str, Any] | None,
    now: int,
) -> Doc:
    return {
        "project_id": project_id,
        "session_id": session_id,
        "user_id": user_id or NO_USER,
        "metadata": merge_patch({}, dict(metadata or {})),
        "order_key": order_key(now, session_id),
        "created_ms": now,
        "updated_ms": now,
        "deleted_ms": 0,
        "deletion_id": "",
        "version": 1,
        "next_seq": 0,
        "memory_count": 0,
        "deletions": 0,  # times deleted; see memories._count_inserted
    }


async def require_user(db: AsyncDatabase[Doc], *, project_id: str, user_id: str | None) -> None:
    """NOT_FOUND unless ``user_id`` is None or names a live user."""
    if user_id and await get_user(db, project_id=project_id, user_id=user_id) is None:
        raise NotFound(f"user {user_id!r} not found", field="userId")


async def get_sessions(
    db: AsyncDatabase[Doc], *, project_id: str, session_ids: Sequence[str]
) -> dict[str, Doc]:
    """Live sessions by id, in one batch."""
    return await find_by_keys(
        _sessions(db),
        match={"project_id": project_id, "deleted_ms": 0},
        field="session_id",
        values=session_ids,
        projection=SESSION_VIEW,
    )


def session_filter(
    *, project_id: str, user_id: str | None = None, metadata: Mapping[str, Any] | None = None
) -> Doc:
    """The flat filter for live sessions, optionally of one user, with metadata equalities."""
    match: Doc = {"project_id": project_id, "deleted_ms": 0}
    if user_id is not None:
        match["user_id"] = user_id
    for key, value in (metadata or {}).items():
        match[f"metadata.{key}"] = value
    return match


async def list_sessions(
    db: AsyncDatabase[Doc], *, match: Mapping[str, Any], window: Window
) -> list[Doc]:
    return await find_window(
        _sessions(db), match=match, key_field="order_key", window=window, projection=SESSION_VIEW
    )


async def list_sessions_of_users(
    db: AsyncDatabase[Doc], *, project_id: str, user_ids: Sequence[str], window: Window
) -> dict[str, list[Doc]]:
    """The same window of live sessions for each user (a DataLoader batch)."""
    return await find_windows(
        _sessions(db),
        match={"project_id": project_id, "deleted_ms": 0},
        group_field="user_id",
        groups=user_ids,
        key_field="order_key",
        window=window,
        projection=SESSION_VIEW,
    )


async def count_sessions(db: AsyncDatabase[Doc], *, match: Mapping[str, Any]) -> int:
    return await count(_sessions(db), match)


async def count_sessions_of_users(
    db: AsyncDatabase[Doc], *, project_id: str, user_ids: Sequence[str]
) -> dict[str, int]:
    """Live sessions per user, in one ``$group`` command."""
    counts = {user_id: 0 for user_id in user_ids}
    cursor = await _sessions(db).aggregate(
        [
            {
                "$match": {
                    "project_id": project_id,
                    "user_id": {"$in": list(counts)},
                    "deleted_ms": 0,
                }
            },
            {"$group": {"_id": "$user_id", "n": {"$sum": 1}}},
        ]
    )
    async for row in cursor:
        counts[row["_id"]] = int(row["n"])
    return counts


async def create_session(
    db: AsyncDatabase[Doc],
    *,
    project_id: str,
    session_id: str,
    user_id: str | None,
    metadata: Mapping[str, Any] | None,
) -> Doc:
    """Create a session; a soft-deleted id starts fresh but keeps its ``next_seq``."""
    await require_user(db, project_id=project_id, user_id=user_id)
    doc = _fresh_session(
        project_id=project_id,
        session_id=session_id,
        user_id=user_id,
        metadata=metadata,
        now=now_ms(),
    )
    return await insert_fresh(
        _sessions(db),
        doc,
        key={"project_id": project_id, "session_id": session_id},
        keep=frozenset({"next_seq", "deletions"}),  # seq keeps rising across incarnations
        what=f"session {session_id!r}",
        field="sessionId",
    )


async def ensure_session(
    db: AsyncDatabase[Doc],
    *,
    project_id: str,
    session_id: str,
    user_id: str | None,
    metadata: MetadataPatch | None = None,
    merge: bool = False,
) -> Doc:
    """Create the session, or revive it and attach ``user_id``; with ``merge``, merge metadata.

    A session may gain a user; moving it to another user is a CONFLICT.
    """
    await require_user(db, project_id=project_id, user_id=user_id)
    now = now_ms()
    doc = _fresh_session(
        project_id=project_id, session_id=session_id, user_id=user_id, metadata=metadata, now=now
    )
    result = await _sessions(db).update_one(
        {"project_id": project_id, "session_id": session_id}, {"$setOnInsert": doc}, upsert=True
    )
    if result.upserted_id is not None:
        return {**doc, "_id": result.upserted_id}
    existing = await _sessions(db).find_one({"project_id": project_id, "session_id": session_id})
    if existing is None:  # purged in between: start again
        return await ensure_session(
            db,
            project_id=project_id,
            session_id=session_id,
            user_id=user_id,
            metadata=metadata,
            merge=merge,
        )
    if user_id and existing["user_id"] not in (NO_USER, user_id):
        raise Conflict(
            f"session {session_id!r} belongs to user {existing['user_id']!r}, not {user_id!r}",
            field="userId",
        )
    if existing["deleted_ms"] and existing["user_id"] and not user_id:
        await _require_live_owner(db, existing)
    needs_user = bool(user_id) and existing["user_id"] == NO_USER
    if not (needs_user or existing["deleted_ms"] or (merge and metadata)):
        return existing
    return await patch_document(
        _sessions(db),
        match={"project_id": project_id, "session_id": session_id},
        what=f"session {session_id!r}",
        set_fields={"user_id": user_id} if needs_user else None,
        metadata_patch=metadata if merge else None,
        revive=True,
        now=now,
    )


async def update_session(
    db: AsyncDatabase[Doc], *, project_id: str, session_id: str, metadata: MetadataPatch | None
) -> Doc:
    """Merge metadata into a live session; NOT_FOUND when missing or deleted."""
    return await patch_document(
        _sessions(db),
        match={"project_id": project_id, "session_id": session_id},
        what=f"session {session_id!r}",
        metadata_patch=metadata,
    )


async def delete_session(db: AsyncDatabase[Doc], *, project_id: str, session_id: str) -> None:
    """Soft-delete the session and its live memories, marked with one deletion token.

    The memories taken are those numbered up to the session's ``next_seq`` at the deletion: if the
    session is revived before this second step runs, memories added since (numbered after it)
    belong to the revived session and stay live.
    """
    now, token = now_ms(), new_token()
    deleted = await _sessions(db).find_one_and_update(
        {"project_id": project_id, "session_id": session_id, "deleted_ms": 0},
        {
            "$set": {"deleted_ms": now, "deletion_id": token, "memory_count": 0},
            "$inc": {"deletions": 1},
        },
    )
    if deleted is None:
        raise NotFound(f"session {session_id!r} not found", field="sessionId")
    await db["memories"].update_many(
        {
            "project_id": project_id,
            "session_id": session_id,
            "deleted_ms": 0,
            "seq": {"$lte": deleted["next_seq"]},
        },
        {"$set": {"deleted_ms": now, "deletion_id": token}},
    )


async def _require_live_owner(db: AsyncDatabase[Doc], session: Doc) -> None:
    """CONFLICT when a deleted session is to come back while its user is deleted."""
    owner = await get_user(db, project_id=session["project_id"], user_id=session["user_id"])
    if owner is None:
        raise Conflict(
            f"session {session['session_id']!r} belongs to deleted user {session['user_id']!r}; "
            "restore or recreate the user first",
            field="sessionId",
        )


async def restore_session(db: AsyncDatabase[Doc], *, project_id: str, session_id: str) -> Doc:
    """Undelete a session and exactly the memories its deletion took with it."""
    sessions = _sessions(db)
    existing = await sessions.find_one({"project_id": project_id, "session_id": session_id})
    if existing is None:
        raise NotFound(f"session {session_id!r} not found", field="sessionId")
    if not existing["deleted_ms"]:
        return existing
    if existing["user_id"]:
        await _require_live_owner(db, existing)
    token = existing["deletion_id"]
    revived = await sessions.find_one_and_update(
        {"_id": existing["_id"], "deletion_id": token, "deleted_ms": existing["deleted_ms"]},
        {"$set": {"deleted_ms": 0, "deletion_id": "", "updated_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if revived is None:  # restored, revived or deleted again meanwhile
        return await restore_session(db, project_id=project_id, session_id=session_id)
    restored = await db["memories"].update_many(
        {"project_id": project_id, "session_id": session_id, "deletion_id": token},
        {"$set": {"deleted_ms": 0, "deletion_id": ""}},
    )
    if not restored.modified_count:
        return revived
    after = await sessions.find_one_and_update(
        {"_id": existing["_id"]},
        {"$inc": {"memory_count": restored.modified_count}},
        return_document=ReturnDocument.AFTER,
    )
    return after or revived
