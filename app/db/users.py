"""Users: create, upsert, update, soft delete with cascade, erasure, listing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar

from memvault.db import queries
from memvault.db.merge import merge_patch
from memvault.db.records import UserRead, read_fields, user_docs
from memvault.errors import NotFound, Subject

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Unpack

    from memvault.db.merge import MetadataPatch
    from memvault.db.records import Database, UserDoc

# Cascades touch sessions in batches of this many ids per command.
CASCADE_BATCH = 500


# Reads for the API fetch only what it shows.
USER_PROJECTION = queries.projection(*read_fields(UserRead))
LIVE_USERS: queries.Lookup[UserRead] = queries.Lookup("users", "user_id", USER_PROJECTION)
KEY_FIELD = queries.ORDER_KEY
"""What orders users in listings: windows of users are ranges of it."""


M = TypeVar("M", bound="Mapping[str, Any]")


class UserWrite(TypedDict, Generic[M]):
    """The arguments of a user write: the user, the profile fields to set by stored name (None
    clears), and metadata: a plain object for a new user, a merge patch for a stored one."""

    project_id: str
    user_id: str
    fields: Mapping[str, Any]
    metadata: M | None


def _key(user: UserWrite[Any]) -> dict[str, str]:
    return {"project_id": user["project_id"], "user_id": user["user_id"]}


def _fresh_user(
    now: int,
    *,
    project_id: str,
    user_id: str,
    fields: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
) -> UserDoc:
    return {
        "project_id": project_id,
        "user_id": user_id,
        "email": fields.get("email"),
        "first_name": fields.get("first_name"),
        "last_name": fields.get("last_name"),
        "metadata": merge_patch({}, dict(metadata or {})),
        "order_key": queries.order_key(now, user_id),
        "created_ms": now,
        "updated_ms": now,
        "deleted_ms": 0,
        "deletion_id": "",
        "version": 1,
    }


async def get_users(
    db: Database, *, project_id: str, user_ids: Sequence[str]
) -> Mapping[str, UserRead]:
    """Live users by id, in one batch."""
    return await LIVE_USERS.get(db, project_id=project_id, values=user_ids)


async def get_user(db: Database, *, project_id: str, user_id: str) -> UserDoc | None:
    """The live user, or None."""
    return await user_docs(db).find_one(
        {"project_id": project_id, "user_id": user_id, "deleted_ms": 0}
    )


def user_filter(
    *,
    project_id: str,
    metadata: Mapping[str, Any] | None = None,
    created_after_ms: int | None = None,
    created_before_ms: int | None = None,
) -> queries.Listing[UserRead]:
    """Live users of a project whose top-level metadata keys equal the given, created strictly
    after / before the given times (``listing.rows(db, window)``, ``listing.count(db)``)."""
    return queries.live_listing(
        "users",
        project_id=project_id,
        equal={},
        metadata=metadata,
        created_after_ms=created_after_ms,
        created_before_ms=created_before_ms,
        projection=USER_PROJECTION,
    )


async def create_user(db: Database, **user: Unpack[UserWrite[Mapping[str, Any]]]) -> UserDoc:
    """Create a user; a soft-deleted id starts over fresh, a live one is ALREADY_EXISTS."""
    return await queries.insert_fresh(
        user_docs(db),
        _fresh_user(queries.now_ms(), **user),
        key=_key(user),
        what=f"user {user['user_id']!r}",
        subject=Subject.USER_ID,
    )


async def upsert_user(db: Database, **user: Unpack[UserWrite[MetadataPatch]]) -> UserDoc:
    """Create the user, or set the given fields and merge metadata (reviving a deleted user)."""
    now = queries.now_ms()
    inserted = await queries.insert_missing(user_docs(db), _fresh_user(now, **user), key=_key(user))
    if inserted is not None:
        return inserted
    return await _patch_user(db, user, revive=True, now=now)


async def update_user(db: Database, **user: Unpack[UserWrite[MetadataPatch]]) -> UserDoc:
    """Set the given fields (None clears) and merge metadata; NOT_FOUND when missing or deleted."""
    return await _patch_user(db, user)


async def _patch_user(
    db: Database, user: UserWrite[MetadataPatch], *, revive: bool = False, now: int | None = None
) -> UserDoc:
    return await queries.patch_document(
        user_docs(db),
        match=_key(user),
        what=f"user {user['user_id']!r}",
        set_fields=user["fields"],
        metadata_patch=user["metadata"],
        revive=revive,
        now=now,
    )


async def delete_user(db: Database, *, project_id: str, user_id: str) -> None:
    """Soft-delete the user, their live sessions and those sessions' live memories."""
    now, token = queries.now_ms(), queries.new_token()
    deleted = await user_docs(db).find_one_and_update(
        {"project_id": project_id, "user_id": user_id, "deleted_ms": 0},
        {"$set": {"deleted_ms": now, "deletion_id": token}},
    )
    if deleted is None:
        raise NotFound(f"user {user_id!r} not found", subject=Subject.USER_ID)
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


async def forget_user(db: Database, *, project_id: str, user_id: str) -> dict[str, int]:
    """Hard-delete the user, all their sessions and memories, live or soft-deleted."""
    found = await user_docs(db).find_one({"project_id": project_id, "user_id": user_id}, {"_id": 1})
    sessions = db["sessions"]
    cursor = sessions.find({"project_id": project_id, "user_id": user_id}, {"session_id": 1})
    session_ids = [doc["session_id"] async for doc in cursor]
    if found is None and not session_ids:
        raise NotFound(f"user {user_id!r} not found", subject=Subject.USER_ID)
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
    result = await user_docs(db).delete_many({"project_id": project_id, "user_id": user_id})
    erased["users"] = result.deleted_count
    return erased
