"""API keys: stored only as SHA-256 hashes; each names one project and a scope."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from pymongo import ReturnDocument

from memvault.db.queries import count, now_ms, sha256_hex
from memvault.db.records import api_key_docs, service_state_docs
from memvault.errors import NotFound, Subject

if TYPE_CHECKING:
    from memvault.db.records import ApiKeyDoc, ApiKeyRead, Database

KEY_PREFIX = "mv_"
AUTH_STATE_ID = "auth"


def hash_key(key: str) -> str:
    """The stored form of a key. Keys are 256-bit random, so a fast hash is enough."""
    return sha256_hex(key)


async def create_key(
    db: Database, *, project_id: str, scope: str, name: str = ""
) -> tuple[ApiKeyDoc, str]:
    """Store a new key; return its record and the key itself (shown once, never stored)."""
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    doc: ApiKeyDoc = {
        "key_id": key_id,
        "key_hash": hash_key(key),
        "project_id": project_id,
        "scope": scope,
        "name": name,
        "created_ms": now_ms(),
        "revoked_ms": 0,
    }
    await api_key_docs(db).insert_one(doc)
    await record_keys_in_force(db, first_key_id=key_id)
    return doc, key


def is_whole_key(text: str) -> bool:
    """Whether ``text`` is a whole key (``mv_<id>_<secret>``) rather than a key's id."""
    return text.startswith(KEY_PREFIX)


async def record_keys_in_force(db: Database, *, first_key_id: str | None) -> bool:
    """Record that this store needs API keys for good: its first key exists. True when this
    call recorded it (it was not recorded before)."""
    result = await service_state_docs(db).update_one(
        {"_id": AUTH_STATE_ID},
        {"$setOnInsert": {"closed_ms": now_ms(), "first_key_id": first_key_id}},
        upsert=True,
    )
    return result.upserted_id is not None


async def keys_in_force(db: Database, *, reopens: bool = False, record: bool = False) -> bool:
    """Whether this store's keys make every request need one: an active key exists or, unless
    ``reopens`` (``MEMVAULT_AUTH=open``), one ever did. ``record``: an active key found is
    recorded (see :func:`record_keys_in_force`), for keys made before the record existed."""
    if await active_key_count(db) > 0:
        if record:
            await record_keys_in_force(db, first_key_id=None)
        return True
    if reopens:
        return False
    return await service_state_docs(db).find_one({"_id": AUTH_STATE_ID}) is not None


async def list_keys(db: Database) -> list[ApiKeyRead]:
    """Every key record (no secrets), oldest first."""
    cursor = api_key_docs(db).find({}, {"key_hash": 0}).sort("created_ms", 1)
    return list(await cursor.to_list())


async def revoke_key(db: Database, *, key_id: str) -> ApiKeyDoc:
    """Revoke the active key ``key_id``, or the one whose whole key is ``key_id`` (see
    :func:`is_whole_key`); NOT_FOUND when no active key matches."""
    if is_whole_key(key_id):
        query: dict[str, object] = {"key_hash": hash_key(key_id)}
        missing = "no active key matches the given key"
    else:
        query = {"key_id": key_id}
        missing = f"no active key with id {key_id!r}"
    revoked = await api_key_docs(db).find_one_and_update(
        {**query, "revoked_ms": 0},
        {"$set": {"revoked_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if revoked is None:
        raise NotFound(missing, subject=Subject.KEY_ID)
    return revoked


async def find_active_key(db: Database, *, key_hash: str) -> ApiKeyDoc | None:
    """The active key record whose key hashes to ``key_hash`` (see :func:`hash_key`), or None."""
    return await api_key_docs(db).find_one({"key_hash": key_hash, "revoked_ms": 0})


async def active_key_count(db: Database) -> int:
    return await count(api_key_docs(db), {"revoked_ms": 0})
