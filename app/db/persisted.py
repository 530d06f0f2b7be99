"""Persisted queries (Apollo's APQ, and the documents ``memvault documents add`` registers):
GraphQL documents stored by the SHA-256 hex of their text, shared by every API process.

Global, not per project: a document is text a frontend ships, it holds no data.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pymongo.errors import DuplicateKeyError

from memvault.db.queries import count, now_ms, sha256_hex

if TYPE_CHECKING:
    from memvault.db.records import Database

COLLECTION = "persisted_queries"


def query_hash(query: str) -> str:
    """What APQ clients send as ``sha256Hash``: the SHA-256 hex of the document's UTF-8 text."""
    return sha256_hex(query)


async def find_query(db: Database, sha256: str) -> str | None:
    """The stored document whose hash is ``sha256``, or None."""
    doc = await db[COLLECTION].find_one({"sha256": sha256}, {"query": 1})
    query = None if doc is None else doc.get("query")
    return query if isinstance(query, str) else None


async def store_query(db: Database, query: str, *, limit: int) -> bool:
    """Store ``query`` under its hash unless ``limit`` documents are stored already; whether it
    is stored now (an existing one counts). The count and the insert are not atomic: concurrent
    registrations may pass the limit by a few, which bounds it still."""
    sha256 = query_hash(query)
    if await find_query(db, sha256) is not None:
        return True
    if await persisted_count(db) >= limit:
        return False
    with contextlib.suppress(DuplicateKeyError):  # stored by another process meanwhile
        await db[COLLECTION].insert_one({"sha256": sha256, "query": query, "created_ms": now_ms()})
    return True


async def persisted_count(db: Database) -> int:
    return await count(db[COLLECTION], {})
