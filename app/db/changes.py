"""Change streams, and the read that live subscriptions catch up with.

One stream per watched collection (``memories``, ``sessions``) serves every subscriber of a
process: a database-wide ``watch()`` would do with one, but the embedded engine's delivers nothing
(``tests/db/test_mongo_contract.py``). Each change carries the document after the change (an
update's post-image: the engine sends it with every update, MongoDB with ``updateLookup``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pymongo.errors import PyMongoError

from memvault.db.memories import MAX_SEQ, seq_key
from memvault.db.records import memory_docs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from memvault.db.records import Database, Doc, MemoryDoc

Watched = Literal["memories", "sessions"]
ChangeKind = Literal["insert", "update", "replace", "delete"]

# How long one getMore waits for changes on the server: each wait is one operation, well within
# MEMVAULT_DB_TIMEOUT_MS (the driver's next() would wait across operations and time out).
AWAIT_MS = 500
# The embedded engine answers a getMore at once, changes or not: it is asked again after this
# pause (a busy loop would cost a core). Half of it is the mean delay it adds to a delivery.
POLL_S = 0.02
WATCHED_KINDS: tuple[ChangeKind, ...] = ("insert", "update", "replace", "delete")
# The page size of a catch-up read.
CATCH_UP_BATCH = 100


class ChangeStreamClosed(PyMongoError):
    """A change stream the server closed: reopen it."""


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a watched collection."""

    kind: ChangeKind
    doc: Doc | None  # the document after the change (None for a delete on MongoDB)
    token: Mapping[str, Any]  # resume after this change with it


async def watch(
    db: Database,
    collection: Watched,
    *,
    resume_after: Mapping[str, Any] | None = None,
    opened: Callable[[], None] | None = None,
    until: Callable[[], bool] | None = None,
) -> AsyncIterator[Change]:
    """The changes of ``collection``, from after ``resume_after`` (or from now) on; ``opened`` is
    called once the stream is open: every later change will be seen. Ends when ``until`` says so
    (asked whenever no change came), by an error (:data:`~memvault.db.errors.DatabaseError`; also
    :class:`ChangeStreamClosed` when the server closed the stream), or
    when the caller stops iterating."""
    pipeline: list[Doc] = [{"$match": {"operationType": {"$in": list(WATCHED_KINDS)}}}]
    stream = await db[collection].watch(
        pipeline,
        full_document="updateLookup",
        resume_after=resume_after,
        max_await_time_ms=AWAIT_MS,
    )
    async with stream:
        if opened is not None:
            opened()
        while stream.alive:
            asked = time.monotonic()
            event = await stream.try_next()
            if event is None:
                if until is not None and until():
                    return
                if time.monotonic() - asked < AWAIT_MS / 2000:  # the server did not wait
                    await asyncio.sleep(POLL_S)
                continue
            doc = event.get("fullDocument")
            if isinstance(doc, dict):
                # (the engine shows the post-image's ObjectId as a plain object; no reader needs it)
                doc.pop("_id", None)
            yield Change(kind=event["operationType"], doc=doc, token=event["_id"])
    # The server ended it (a cursor lost with a restarted engine, an invalidate): try_next
    # answers None for ever then, so the caller must reopen it (and re-read what it missed).
    raise ChangeStreamClosed(f"the change stream of {collection} was closed by the server")


async def memories_after(
    db: Database, *, project_id: str, session_id: str, after_seq: int, before_seq: int | None = None
) -> list[MemoryDoc]:
    """The stored memories of a session numbered after ``after_seq`` (and before
    ``before_seq``), deleted ones too, in ``seq`` order; at most :data:`CATCH_UP_BATCH`."""
    low = seq_key(project_id, session_id, after_seq + 1)
    high = seq_key(project_id, session_id, MAX_SEQ if before_seq is None else before_seq)
    # One range on seq_key and nothing else (see memories.seq_key): index-backed on the engine.
    cursor = memory_docs(db).find(
        {"seq_key": {"$gte": low, "$lt": high}},
        sort=[("seq_key", 1)],
        limit=CATCH_UP_BATCH,
    )
    return await cursor.to_list()
