"""Full-text search over a project's live memories: parsed terms, a ranker, keyset pages.

The query shape (``tests/db/test_query_shapes.py``) is one flat filter beside ``$text``::

    {$text: {$search: '"w1" "a phrase"'}, project_id, deleted_ms: 0,
     [session_id | session_id: {$in}], [role_type], [role], [metadata.<k>], [created_ms: range]}
    sort {score: textScore, created_ms: -1, uuid: -1}, limit n

Every word is sent quoted, so all words and phrases must match on MongoDB and on the engine
alike (the engine ANDs bare words, MongoDB ORs them), and ``-term`` is never sent (the engine
reads it as a required term): rows holding an excluded term are dropped here, as are rows whose
boolean metadata the engine over-matched (``tests/db/test_mongo_contract.py``).

A text score cannot be a filter, so a page is the next rows after its cursor within the best
``MAX_DEPTH`` matches: a read asks for just enough of them, more only when rows were dropped
or the cursor lies deeper. The cursor's row is found again by uuid first (the engine's scores
move as memories are added), then by (score, created_ms, uuid).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from memvault.db.memories import MEMORY_PROJECTION
from memvault.db.queries import metadata_equal
from memvault.errors import BadUserInput, Subject

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from memvault.db.records import Database, Doc, MemoryRead

MAX_QUERY_CHARS = 1000
MAX_TERMS = 16
MAX_TERM_CHARS = 64
MAX_DEPTH = 1000
"""Rows a search reads at most: pages reach the best this many matches."""
MAX_USER_SESSIONS = 1000
"""Sessions a user filter may expand to (a ``session_id: {$in}`` beside ``$text``)."""

_TOKEN = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """``text`` case- and diacritic-folded, as the text index compares it."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokens(text: str) -> list[str]:
    """The words of ``text``, folded (punctuation and symbols separate them)."""
    return _TOKEN.findall(fold(text))


@dataclass(frozen=True, slots=True)
class SearchTerms:
    """A parsed query: terms that must match (a word, or a phrase of words in order) and
    words no result may hold."""

    required: tuple[tuple[str, ...], ...]
    excluded: frozenset[str] = field(default_factory=frozenset)

    def text_search(self) -> str:
        """The ``$search`` string: every term quoted (see the module's docstring)."""
        return " ".join(f'"{" ".join(term)}"' for term in self.required)

    def keeps(self, content: str) -> bool:
        return not self.excluded or self.excluded.isdisjoint(tokens(content))


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Flat filters of a search, checked by the caller (ids, role, metadata scalars)."""

    user_id: str | None = None
    session_id: str | None = None
    role_type: str | None = None
    role: str | None = None
    created_after_ms: int | None = None
    created_before_ms: int | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked memory: its score and the key a cursor holds."""

    row: MemoryRead
    score: float

    @property
    def key(self) -> tuple[float, int, str]:
        return (self.score, self.row.get("created_ms", 0), self.row["uuid"])


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[Hit]
    has_next_page: bool


class Ranker(Protocol):
    """Where ranked candidates come from: the best ``limit`` live memories matching ``terms``
    and the flat ``match``, best first (ties: newer first, then by uuid). The text ranker is the
    only one; a vector or hybrid ranker (Atlas ``$vectorSearch``, a local model) plugs in here."""

    async def rank(self, db: Database, terms: SearchTerms, match: Doc, limit: int) -> list[Hit]: ...


class TextRanker:
    """Ranks by the server's text score (``$text`` on the index of ``indexes.py``)."""

    async def rank(self, db: Database, terms: SearchTerms, match: Doc, limit: int) -> list[Hit]:
        score = {"$meta": "textScore"}
        cursor = (
            db["memories"]
            .find({"$text": {"$search": terms.text_search()}, **match}, search_projection())
            .sort([("score", score), ("created_ms", -1), ("uuid", -1)])
            .limit(limit)
        )
        return [
            Hit(cast("MemoryRead", doc), float(doc.pop("score"))) for doc in await cursor.to_list()
        ]


def search_projection() -> Doc:
    return {**MEMORY_PROJECTION, "score": {"$meta": "textScore"}}


TEXT_RANKER: Ranker = TextRanker()


async def _session_ids_of_user(db: Database, *, project_id: str, user_id: str) -> list[str]:
    rows = (
        await db["sessions"]
        .find(
            {"project_id": project_id, "user_id": user_id, "deleted_ms": 0},
            {"session_id": 1},
        )
        .limit(MAX_USER_SESSIONS + 1)
        .to_list()
    )
    if len(rows) > MAX_USER_SESSIONS:
        raise BadUserInput(
            f"the user has over {MAX_USER_SESSIONS} sessions: search one of them",
            subject=Subject.USER_ID,
        )
    return [row["session_id"] for row in rows]


async def search_match(db: Database, *, project_id: str, given: SearchFilter) -> Doc | None:
    """The flat filter beside ``$text`` for ``given``; None when nothing can match."""
    match: Doc = {"project_id": project_id, "deleted_ms": 0}
    if given.user_id is not None:
        sessions = await _session_ids_of_user(db, project_id=project_id, user_id=given.user_id)
        if given.session_id is not None:
            sessions = [s for s in sessions if s == given.session_id]
        if not sessions:
            return None
        match["session_id"] = sessions[0] if len(sessions) == 1 else {"$in": sessions}
    elif given.session_id is not None:
        match["session_id"] = given.session_id
    if given.role_type is not None:
        match["role_type"] = given.role_type
    if given.role is not None:
        match["role"] = given.role
    match.update(metadata_equal(given.metadata))
    bounds: Doc = {}
    if given.created_after_ms is not None:
        bounds["$gt"] = given.created_after_ms
    if given.created_before_ms is not None:
        bounds["$lt"] = given.created_before_ms
    if bounds:
        match["created_ms"] = bounds
    return match


def _metadata_keeps(row: MemoryRead, metadata: Mapping[str, Any] | None) -> bool:
    """Metadata equality as MongoDB's: booleans are not numbers (the engine equates True with 1:
    see the contract), 1 equals 1.0."""
    stored = row.get("metadata") or {}
    return all(
        key in stored
        and isinstance(stored[key], bool) == isinstance(value, bool)
        and stored[key] == value
        for key, value in (metadata or {}).items()
    )


def _after(hits: Sequence[Hit], cursor: tuple[float, int, str]) -> int | None:
    """Where the rows after ``cursor`` start in ``hits``; None when they may lie further."""
    for index, hit in enumerate(hits):
        if hit.row["uuid"] == cursor[2]:
            return index + 1
    score, created, uuid = cursor
    for index, hit in enumerate(hits):
        if (hit.score, hit.row.get("created_ms", 0), hit.row["uuid"]) < (score, created, uuid):
            return index
    return None


async def search_memories(
    db: Database,
    *,
    project_id: str,
    terms: SearchTerms,
    given: SearchFilter,
    size: int,
    after: tuple[float, int, str] | None = None,
    ranker: Ranker = TEXT_RANKER,
) -> SearchPage:
    """One page of at most ``size`` live memories of the project matching ``terms`` and
    ``given``, best first, after the cursor key ``after``."""
    match = await search_match(db, project_id=project_id, given=given)
    if match is None or size <= 0:
        return SearchPage([], has_next_page=False)
    limit = min(MAX_DEPTH, (size + 1) * (4 if after else 1))
    while True:
        hits = await ranker.rank(db, terms, match, limit)
        exhausted = len(hits) < limit or limit >= MAX_DEPTH
        kept = [
            hit
            for hit in hits
            if terms.keeps(hit.row.get("content", "")) and _metadata_keeps(hit.row, given.metadata)
        ]
        start = 0 if after is None else _after(kept, after)
        if start is not None and (len(kept) - start > size or exhausted):
            page = kept[start : start + size + 1]
            return SearchPage(page[:size], has_next_page=len(page) > size)
        if exhausted:
            return SearchPage([], has_next_page=False)
        limit = min(MAX_DEPTH, limit * 4)
