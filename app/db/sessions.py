"""Sessions: create, upsert, update, soft delete with cascade, restore, listing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from memvault.db.merge import merge_patch
from memvault.db.queries import (
    ORDER_KEY,
    Listing,
    Lookup,
    find_windows,
    insert_fresh,
    insert_missing,
    live_listing,
    new_token,
    now_ms,
    order_key,
    patch_document,
    projection,
)
from memvault.db.records import SessionRead, read_fields, session_docs
from memvault.db.users import get_user
from memvault.errors import Conflict, NotFound, Subject

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from memvault.db.merge import MetadataPatch
    from memvault.db.queries import Window
    from memvault.db.records import Database, SessionDoc

NO_USER = ""  # sessions without a user store "" (never null: null matching is unreliable)


# Reads for the API fetch only what it shows.
SESSION_PROJECTION = projection(*read_fields(SessionRead))
LIVE_SESSIONS: Lookup[SessionRead] = Lookup("sessions", "session_id", SESSION_PROJECTION)
KEY_FIELD = ORDER_KEY
"""What orders sessions in listings: windows of sessions are ranges of it."""
# Always fetched by a listing: what its rows are ordered by and turned into cursors and nodes.
SESSION_KEYS = ("session_id", KEY_FIELD)
# A session's fields, by their domain names, and the stored fields each is read from (beside
# the keys).
SESSION_SOURCES: dict[str, tuple[str, ...]] = {
    "id": (),
    "session_id": (),
    "user_id": ("user_id",),
    "user": ("user_id",),
    "metadata": ("metadata",),
    "created_at": ("created_ms",),
    "updated_at": ("updated_ms",),
    "memory_count": ("memory_count",),
    "memories": ("memory_count",),  # (its totalCount)
    "search_memories": (),
}
# The shapes a listing of sessions may ask for: a page of ids (what a client walking the
# sessions asks), or everything (None: SESSION_PROJECTION). A closed set, as memories' shapes:
# the embedded engine compiles each new projection, and projects each field it is asked for
# (a page of 100 sessions measured ~0.6 ms slower with all seven fields than with the keys).
LISTED_IDS = frozenset(SESSION_KEYS)
SESSION_SHAPES: tuple[frozenset[str] | None, ...] = (LISTED_IDS, None)
_PROJECTIONS = {LISTED_IDS: projection(*SESSION_KEYS), None: SESSION_PROJECTION}

Fields = frozenset[str] | None
"""Stored fields of sessions to fetch: one of ``SESSION_SHAPES`` (None: all the API shows)."""


def stored_fields(names: Iterable[str]) -> Fields:
    """The smallest of ``SESSION_SHAPES`` holding what showing these fields of sessions needs,
    by their domain names (``SESSION_SOURCES``); None (everything) when one is unknown."""
    needed = set(SESSION_KEYS)
    for name in names:
        sources = SESSION_SOURCES.get(name)
        if sources is None:
            return None
        needed.update(sources)
    return next((shape for shape in SESSION_SHAPES if shape is None or needed <= shape), None)


def _fresh_session(
    now: int,
    *,
    project_id: str,
    session_id: str,
    user_id: str | None,
    metadata: Mapping[str, Any] | None,
) -> SessionDoc:
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


async def require_user(db: Database, *, project_id: str, user_id: str | None) -> None:
    """NOT_FOUND unless ``user_id`` is None or names a live user."""
    if user_id and await get_user(db, project_id=project_id, user_id=user_id) is None:
        raise NotFound(f"user {user_id!r} not found", subject=Subject.USER_ID)


async def get_sessions(
    db: Database, *, project_id: str, session_ids: Sequence[str]
) -> Mapping[str, SessionRead]:
    """Live sessions by id, in one batch."""
    return await LIVE_SESSIONS.get(db, project_id=project_id, values=session_ids)


def session_filter(
    *,
    project_id: str,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    created_after_ms: int | None = None,
    created_before_ms: int | None = None,
    fields: Fields = None,
) -> Listing[SessionRead]:
    """Live sessions of a project, of one user if given, whose top-level metadata keys equal the
    given, created strictly after / before the given times (``listing.rows(db, window)``,
    ``listing.count(db)``); with ``fields`` (one of ``SESSION_SHAPES``), only those stored
    fields of each session."""
    return live_listing(
        "sessions",
        project_id=project_id,
        equal={} if user_id is None else {"user_id": user_id},
        metadata=metadata,
        created_after_ms=created_after_ms,
        created_before_ms=created_before_ms,
        projection=_PROJECTIONS[fields],
    )


async def list_sessions_of_users(
    db: Database, *, project_id: str, user_ids: Sequence[str], window: Window
) -> Mapping[str, Sequence[SessionRead]]:
    """The same window of live sessions for each user (a DataLoader batch)."""
    return await find_windows(
        session_docs(db),
        match={"project_id": project_id, "deleted_ms": 0},
        groups=user_ids,
        group_field="user_id",
        key_field=KEY_FIELD,
        window=window,
        projection=SESSION_PROJECTION,
    )


async def count_sessions_of_users(
    db: Database, *, project_id: str, user_ids: Sequence[str]
) -> dict[str, int]:
    """Live sessions per user, in one ``$group`` command."""
    counts = {user_id: 0 for user_id in user_ids}
    cursor = await db["sessions"].aggregate(
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
    db: Database,
    *,
    project_id: str,
    session_id: str,
    user_id: str | None,
    metadata: Mapping[str, Any] | None,
) -> SessionDoc:
    """Create a session; a soft-deleted id starts fresh but keeps its ``next_seq``."""
    await require_user(db, project_id=project_id, user_id=user_id)
    doc = _fresh_session(
        now_ms(), project_id=project_id, session_id=session_id, user_id=user_id, metadata=metadata
    )
    return await insert_fresh(
        session_docs(db),
        doc,
        key={"project_id": project_id, "session_id": session_id},
        keep=frozenset({"next_seq", "deletions"}),  # seq keeps rising across incarnations
        what=f"session {session_id!r}",
        subject=Subject.SESSION_ID,
    )


async def ensure_session(
    db: Database,
    *,
    project_id: str,
    session_id: str,
    user_id: str | None,
    metadata: MetadataPatch | None = None,
    merge: bool = False,
) -> SessionDoc:
    """Create the session, or revive it and attach ``user_id``; with ``merge``, merge metadata.

    A session may gain a user; moving it to another user is a CONFLICT.
    """
    await require_user(db, project_id=project_id, user_id=user_id)
    now = now_ms()
    doc = _fresh_session(
        now, project_id=project_id, session_id=session_id, user_id=user_id, metadata=metadata
    )
    key = {"project_id": project_id, "session_id": session_id}
    inserted = await insert_missing(session_docs(db), doc, key=key)
    if inserted is not None:
        return inserted
    existing = await session_docs(db).find_one(key)
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
            subject=Subject.USER_ID,
        )
    if existing["deleted_ms"] and existing["user_id"] and not user_id:
        await _require_live_owner(db, existing)
    needs_user = bool(user_id) and existing["user_id"] == NO_USER
    if not (needs_user or existing["deleted_ms"] or (merge and metadata)):
        return existing
    return await patch_document(
        session_docs(db),
        match=key,
        what=f"session {session_id!r}",
        set_fields={"user_id": user_id} if needs_user else None,
        metadata_patch=metadata if merge else None,
        revive=True,
        now=now,
    )


async def update_session(
    db: Database, *, project_id: str, session_id: str, metadata: MetadataPatch | None
) -> SessionDoc:
    """Merge metadata into a live session; NOT_FOUND when missing or deleted."""
    return await patch_document(
        session_docs(db),
        match={"project_id": project_id, "session_id": session_id},
        what=f"session {session_id!r}",
        metadata_patch=metadata,
    )


async def delete_session(db: Database, *, project_id: str, session_id: str) -> None:
    """Soft-delete the session and its live memories, marked with one deletion token.

    The memories taken are those numbered up to the session's ``next_seq`` at the deletion: if the
    session is revived before this second step runs, memories added since (numbered after it)
    belong to the revived session and stay live.
    """
    now, token = now_ms(), new_token()
    deleted = await session_docs(db).find_one_and_update(
        {"project_id": project_id, "session_id": session_id, "deleted_ms": 0},
        {
            "$set": {"deleted_ms": now, "deletion_id": token, "memory_count": 0},
            "$inc": {"deletions": 1},
        },
    )
    if deleted is None:
        raise NotFound(f"session {session_id!r} not found", subject=Subject.SESSION_ID)
    await db["memories"].update_many(
        {
            "project_id": project_id,
            "session_id": session_id,
            "deleted_ms": 0,
            "seq": {"$lte": deleted["next_seq"]},
        },
        {"$set": {"deleted_ms": now, "deletion_id": token}},
    )


async def _require_live_owner(db: Database, session: SessionDoc) -> None:
    """CONFLICT when a deleted session is to come back while its user is deleted."""
    owner = await get_user(db, project_id=session["project_id"], user_id=session["user_id"])
    if owner is None:
        raise Conflict(
            f"session {session['session_id']!r} belongs to deleted user {session['user_id']!r}; "
            "restore or recreate the user first",
            subject=Subject.SESSION_ID,
        )


async def find_session(db: Database, *, project_id: str, session_id: str) -> SessionDoc | None:
    """A session as stored, deleted or not; None when there is none."""
    return await session_docs(db).find_one({"project_id": project_id, "session_id": session_id})


async def require_session(db: Database, *, project_id: str, session_id: str) -> SessionDoc:
    """A session as stored, deleted or not; NOT_FOUND when there is none."""
    existing = await find_session(db, project_id=project_id, session_id=session_id)
    if existing is None:
        raise NotFound(f"session {session_id!r} not found", subject=Subject.SESSION_ID)
    return existing


async def restore_session(db: Database, *, project_id: str, session_id: str) -> SessionDoc:
    """Undelete a session and exactly the memories its deletion took with it."""
    sessions = session_docs(db)
    existing = await require_session(db, project_id=project_id, session_id=session_id)
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
