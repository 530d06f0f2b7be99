"""API keys: stored only as SHA-256 hashes; each names one project and a scope."""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from pymongo import ReturnDocument

from memvault.db.documents import Doc, now_ms
from memvault.errors import NotFound

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

KEY_PREFIX = "mv_"


def _keys(db: AsyncDatabase[Doc]) -> AsyncCollection[Doc]:
    return db["api_keys"]


def hash_key(key: str) -> str:
    """The stored form of a key. Keys are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


async def create_key(
    db: AsyncDatabase[Doc], *, project_id: str, scope: str, name: str = ""
) -> tuple[Doc, str]:
    """Store a new key; return its record and the key itself (shown once, never stored)."""
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    doc: Doc = {
        "key_id": key_id,
        "key_hash": hash_key(key),
        "project_id": project_id,
        "scope": scope,
        "name": name,
        "created_ms": now_ms(),
        "revoked_ms": 0,
    }
    await _keys(db).insert_one(doc)
    return doc, key


async def list_keys(db: AsyncDatabase[Doc]) -> list[Doc]:
    """Every key record (no secrets), oldest first."""
    cursor = _keys(db).find({}, {"key_hash": 0}).sort("created_ms", 1)
    return await cursor.to_list()


async def revoke_key(db: AsyncDatabase[Doc], *, key_id: str) -> Doc:
    revoked = await _keys(db).find_one_and_update(
        {"key_id": key_id, "revoked_ms": 0},
        {"$set": {"revoked_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    if revoked is None:
        raise NotFound(f"no active key with id {key_id!r}", field="key_id")
    return revoked


async def find_active_key(db: AsyncDatabase[Doc], *, key_hash: str) -> Doc | None:
    """The active key record whose key hashes to ``key_hash`` (see :func:`hash_key`), or None."""
    return await _keys(db).find_one({"key_hash": key_hash, "revoked_ms": 0})


async def active_key_count(db: AsyncDatabase[Doc]) -> int:
    reply = await db.command("count", "api_keys", query={"revoked_ms": 0})
    return int(reply["n"])
