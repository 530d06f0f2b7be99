"""Hard deletion of what was soft-deleted long enough ago."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memvault.db.queries import now_ms

if TYPE_CHECKING:
    from memvault.db.records import Database


async def purge(db: Database, *, older_than_ms: int) -> dict[str, int]:
    """Hard-delete everything soft-deleted before ``now - older_than_ms``; return counts."""
    cutoff = now_ms() - older_than_ms
    purged: dict[str, int] = {}
    for name in ("memories", "sessions", "users"):
        result = await db[name].delete_many({"deleted_ms": {"$gt": 0, "$lt": cutoff}})
        purged[name] = result.deleted_count
    return purged
