"""API keys: stored only as SHA-256 hashes; each names one project and a scope."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from pymongo import ReturnDocument

from memvault.db.queries import count, now_ms, sha256_hex
from memvault.db.records import api_key_docs
from memvault.errors import NotFound, Subject

if TYPE_CHECKING:
    from memvault.db.records import ApiKeyDoc, ApiKeyRead, Database

KEY_PREFIX = "mv_"


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
    return doc, key


async def list_keys(db: Database) -> list[ApiKeyRead]:
    """Every key record (no secrets), oldest first."""
    cursor = api_key_docs(db).find({}, {"key_hash": 0}).sort("created_ms", 1)
    return list(await cursor.to_list())


async def revoke_key(db: Database, *, key_id: str) -> ApiKeyDoc:
    revoked = await api_key_docs(db).find_one_and_update(
        {"key_id": key_id, "revoked_ms": 0},
        {"$set": {"revoked_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if revoked is None:
        raise NotFound(f"no active key with id {key_id!r}", subject=Subject.KEY_ID)
    return revoked


async def find_active_key(db: Database, *, key_hash: str) -> ApiKeyDoc | None:
    """The active key record whose key hashes to ``key_hash`` (see :func:`hash_key`), or None."""
    return await api_key_docs(db).find_one({"key_hash": key_hash, "revoked_ms": 0})


async def active_key_count(db: Database) -> int:
    return await count(api_key_docs(db), {"revoked_ms": 0})
