"""Every index memvault uses, declared once.

Two sets, for one reason: MongoDB serves each query shape from the compound indexes below, each
starting with ``project_id``. The embedded engine (``nx-27017``) enforces unique compound
indexes but only *uses* single-field indexes for lookups: a flat filter served by a compound index
was measured at 21-35 ms on 20k documents (a scan), the same filter with a single-field index on
its most selective field at 1.6-3.3 ms. So on the engine the unique compound indexes stay (they
are constraints) and each query shape gets a single-field index on its most selective field.
No index contains ``_id``: on the engine that makes every insert fail.

The engine picks an indexed *equality* field over an indexed *range* field: with an index on
``deleted_ms``, the window filter ``{deleted_ms: 0, seq_key: {range}}`` read all 100k memories of
a session (265 ms) instead of 20 (1.6 ms). So the engine set indexes no field that appears as an
equality beside a keyset range (``deleted_ms``, ``project_id``): the hourly purge scans instead.
Indexes the engine has but this set lacks are dropped at start-up (by the engine's own names; it
ignores the names it is given).

Search (``search.py``) needs one text index on memories in both sets: ``$text`` fails on MongoDB
without it and matches nothing on the engine. It weighs ``content`` only: metadata is filtered by
equality, and a wildcard text index would also index ids and roles. Language ``none``: no
stemming and no stop words, so any language is matched word for word (case and diacritics
folded). The engine does not list a text index, so the drop of undeclared ones never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymongo.errors import OperationFailure

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase


@dataclass(frozen=True)
class Index:
    collection: str
    keys: tuple[str, ...]
    unique: bool = False

    @property
    def name(self) -> str:
        return "_".join(self.keys) + ("_unique" if self.unique else "")


MONGODB_INDEXES: tuple[Index, ...] = (
    Index("users", ("project_id", "user_id"), unique=True),
    Index("users", ("project_id", "order_key")),
    Index("users", ("deleted_ms",)),
    Index("sessions", ("project_id", "session_id"), unique=True),
    Index("sessions", ("project_id", "user_id", "order_key")),
    Index("sessions", ("project_id", "order_key")),
    Index("sessions", ("deleted_ms",)),
    Index("memories", ("project_id", "uuid"), unique=True),
    Index("memories", ("project_id", "session_id", "seq"), unique=True),
    Index("memories", ("seq_key",)),  # project, session and seq in one key: see memories.seq_key
    Index("memories", ("deleted_ms",)),
    Index("api_keys", ("key_hash",), unique=True),
    Index("api_keys", ("key_id",), unique=True),
    Index("api_keys", ("revoked_ms",)),  # "does any active key exist?" (the open mode check)
    Index("persisted_queries", ("sha256",), unique=True),  # global: a document holds no data
)

EMBEDDED_INDEXES: tuple[Index, ...] = (
    *(index for index in MONGODB_INDEXES if index.unique),
    Index("users", ("user_id",)),
    Index("users", ("order_key",)),
    Index("sessions", ("session_id",)),
    Index("sessions", ("user_id",)),
    Index("sessions", ("order_key",)),
    Index("memories", ("uuid",)),
    Index("memories", ("session_id",)),
    Index("memories", ("seq_key",)),
)


@dataclass(frozen=True)
class TextIndex:
    collection: str
    weights: tuple[tuple[str, int], ...]
    language: str = "none"


MEMORY_TEXT_INDEX = TextIndex("memories", (("content", 10),))


def indexes_for(*, embedded: bool) -> tuple[Index, ...]:
    return EMBEDDED_INDEXES if embedded else MONGODB_INDEXES


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]], *, embedded: bool) -> int:
    """Create every index of the chosen set (idempotent); return how many were declared."""
    declared = indexes_for(embedded=embedded)
    for index in declared:
        await db[index.collection].create_index(
            [(key, 1) for key in index.keys], unique=index.unique, name=index.name
        )
    await _ensure_text_index(db, MEMORY_TEXT_INDEX, embedded=embedded)
    if embedded:
        await _drop_undeclared(db, declared)
    return len(declared) + 1


async def _ensure_text_index(
    db: AsyncDatabase[dict[str, Any]], text: TextIndex, *, embedded: bool
) -> None:
    try:
        await db[text.collection].create_index(
            [(key, "text") for key, _ in text.weights],
            weights=dict(text.weights),
            default_language=text.language,
            name=f"{text.collection}_text",
        )
    except OperationFailure as exc:
        # the engine refuses to create its text index again once documents exist, and keeps
        # the one it has (tests/db/test_mongo_contract.py: test_rule_create_the_text_index_*)
        if not (embedded and "constraint failed" in str(exc)):
            raise


async def _drop_undeclared(db: AsyncDatabase[dict[str, Any]], declared: tuple[Index, ...]) -> None:
    """Drop the engine's indexes that the embedded set no longer declares (matched by keys)."""
    wanted = {(index.collection, index.keys) for index in declared}
    for collection in {index.collection for index in declared}:
        info = await db[collection].index_information()
        for name, spec in info.items():
            keys = tuple(field for field, _ in spec["key"])
            if keys != ("_id",) and (collection, keys) not in wanted:
                await db[collection].drop_index(name)
