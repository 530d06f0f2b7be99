"""Helpers every repository shares: time, keyset windows, batched reads, guarded patches.

Every query here is a flat filter (an implicit AND of equalities and one range on one ordering
field): the embedded engine sends ``$and``/``$or`` to a slow evaluator, and MongoDB serves flat
filters from the compound indexes of ``indexes.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from memvault.errors import AlreadyExists, Conflict, NotFound

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from pymongo.asynchronous.collection import AsyncCollection

    from memvault.db.merge import MetadataPatch
    from memvault.db.records import Database, Doc
    from memvault.errors import Subject

Key = str | int
"""A keyset key: an ``order_key`` (users, sessions) or a ``seq`` (memories)."""
D = TypeVar("D", bound="Mapping[str, Any]")

# The engine answers a flat $unionWith pipeline of up to ~45 branches in time linear in the
# branches, and ~50x slower past that (measured: 45 branches 15 ms, 50 branches 585 ms), while
# nested unions stay linear (100 branches in groups: 55-70 ms). Branches are grouped by this many:
# a pipeline then holds its own group's unions plus at most as many nested groups, under 40.
UNION_WIDTH = 20
# The engine compiles each distinct statement once (its values are parameters), and a union's
# compile grows with the square of its branches: first runs measured 0.05 s at 20 branches,
# 0.3-0.8 s at 100, 4.4 s at 300, 9.7 s at 400 (repeats: 3, 19-65, 67, 91 ms), while every other
# command waited. So the branch count is one of a closed set, each compiled at start
# (``shapes.py``): a union is padded with branches that match nothing (0.05 ms each) up to the
# next of these sizes, in commands of at most the largest (a page of the largest default size
# is one command).
UNION_SIZES = (2, 5, 10, 20, 100)
# A key no stored document has (ids refuse control characters): what padding branches look up.
NO_KEY = "\x01"
# Largest first batch asked for (a reply stays well under MongoDB's 16 MiB per batch of rows this
# size only because every batched read is bounded by page size times parents).
MAX_BATCH_ROWS = 10_000
# Optimistic-concurrency retries of a guarded patch before giving up with CONFLICT.
PATCH_ATTEMPTS = 200


def now_ms() -> int:
    """The current time as integer milliseconds since the epoch, UTC."""
    return time.time_ns() // 1_000_000


def new_token() -> str:
    return uuid.uuid4().hex


ORDER_KEY = "order_key"
"""The field that orders users and sessions: :func:`order_key` of each."""


def order_key(created_ms: int, ident: str) -> str:
    """Creation time as 13 digits, then the id: orders by time, with the id as tie-break."""
    return f"{created_ms:013d}{ident}"


# An order_key starts with 13 digits: creation times up to 2286-11-20. A filter time past that is
# the last of them, not a 14-digit key that would sort below every stored one.
LAST_KEY_MS = 10**13 - 1


def created_range(created_after_ms: int | None, created_before_ms: int | None) -> Window:
    """The ``order_key`` range of items created strictly after / strictly before these times."""
    gte = lt = None
    if created_after_ms is not None:
        gte = f"{min(created_after_ms + 1, LAST_KEY_MS):013d}"
    if created_before_ms is not None:
        lt = f"{min(created_before_ms, LAST_KEY_MS):013d}"
    return Window(gte=gte, lt=lt)


def key_after(key: Key) -> Key:
    """The smallest key strictly greater than ``key`` (ids hold no NUL, so ``key + NUL`` works)."""
    return key + 1 if isinstance(key, int) else key + "\x00"


@dataclass(frozen=True, slots=True)
class Window:
    """A keyset slice: keys in ``[gte, lt)``, sorted ascending or descending, at most ``limit``."""

    gte: Key | None = None
    lt: Key | None = None
    descending: bool = False
    limit: int = 20

    def narrowed(self, *, gte: Key | None = None, lt: Key | None = None) -> Window:
        """This window with a tighter lower and/or upper bound."""
        new_gte = self.gte if gte is None or (self.gte is not None and self.gte >= gte) else gte  # type: ignore[operator]
        new_lt = self.lt if lt is None or (self.lt is not None and self.lt <= lt) else lt  # type: ignore[operator]
        return Window(gte=new_gte, lt=new_lt, descending=self.descending, limit=self.limit)

    def with_limit(self, limit: int, *, descending: bool) -> Window:
        return Window(gte=self.gte, lt=self.lt, descending=descending, limit=limit)

    def empty(self) -> bool:
        return self.gte is not None and self.lt is not None and self.gte >= self.lt  # type: ignore[operator]

    def match(self, base: Mapping[str, Any], key_field: str) -> Doc:
        """``base`` plus this window's range on ``key_field``."""
        match = dict(base)
        bounds: Doc = {}
        if self.gte is not None:
            bounds["$gte"] = self.gte
        if self.lt is not None:
            bounds["$lt"] = self.lt
        if bounds:
            match[key_field] = bounds
        return match

    def pipeline(
        self, base: Mapping[str, Any], key_field: str, projection: Mapping[str, Any] | None = None
    ) -> list[Doc]:
        stages: list[Doc] = [
            {"$match": self.match(base, key_field)},
            {"$sort": {key_field: -1 if self.descending else 1}},
            {"$limit": self.limit},
        ]
        if projection:
            stages.append({"$project": projection})  # shared, never modified: no copy
        return stages


async def find_window(
    coll: AsyncCollection[D],
    *,
    match: Mapping[str, Any],
    key_field: str,
    window: Window,
    projection: Mapping[str, Any] | None = None,
) -> list[D]:
    """The rows of one keyset window, in the window's order."""
    if window.empty() or window.limit <= 0:
        return []
    cursor = (
        coll.find(window.match(match, key_field), projection)
        .sort(key_field, -1 if window.descending else 1)
        .limit(window.limit)
    )
    return await cursor.to_list()


def _chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def union_pipeline(collection: str, branches: Sequence[list[Doc]]) -> list[Doc]:
    """One pipeline returning each branch's rows: the first branch inline, the others joined by
    ``$unionWith``, nested in groups of ``UNION_WIDTH`` so that no pipeline holds 40 unions."""

    def flat(group: Sequence[list[Doc]]) -> list[Doc]:
        return list(group[0]) + [
            {"$unionWith": {"coll": collection, "pipeline": branch}} for branch in group[1:]
        ]

    while len(branches) > UNION_WIDTH:
        branches = [flat(group) for group in _chunks(branches, UNION_WIDTH)]
    return flat(branches)


async def aggregate_bounded(
    coll: AsyncCollection[D], pipeline: Sequence[Mapping[str, Any]], *, most: int
) -> list[D]:
    """The rows of a pipeline that returns at most ``most`` of them, usually in one command.

    The ``aggregate`` command is sent as is, with a first batch one larger than the answer, so
    the server returns every row and closes its cursor: no cursor object and no ``getMore``
    (measured: ~0.1 ms less client CPU per read than ``aggregate()`` and ``to_list()``). Rows
    past MongoDB's 16 MiB per batch are read with ``getMore`` in the same session, as a driver
    cursor would.
    """
    batch = max(1, min(most, MAX_BATCH_ROWS) + 1)
    db = coll.database
    async with db.client.start_session() as session:
        reply = await db.command(
            {"aggregate": coll.name, "pipeline": pipeline, "cursor": {"batchSize": batch}},
            session=session,
            codec_options=coll.codec_options,
        )
        cursor = reply["cursor"]
        rows: list[D] = cursor["firstBatch"]
        while cursor["id"]:
            reply = await db.command(
                {"getMore": cursor["id"], "collection": coll.name, "batchSize": batch},
                session=session,
                codec_options=coll.codec_options,
            )
            cursor = reply["cursor"]
            rows += cursor["nextBatch"]
    return rows


async def _union(
    coll: AsyncCollection[D],
    branches: Sequence[list[Doc]],
    *,
    blank: list[Doc],
    rows_per_branch: int,
) -> list[D]:
    """Every branch's rows, in commands of at most ``UNION_SIZES[-1]`` branches, each padded to
    one of ``UNION_SIZES`` with ``blank``: a branch of the same shape that matches nothing."""
    rows: list[D] = []
    for chunk in _chunks(branches, UNION_SIZES[-1]):
        size = next(size for size in UNION_SIZES if size >= len(chunk))
        pipeline = union_pipeline(coll.name, [*chunk, *[blank] * (size - len(chunk))])
        rows += await aggregate_bounded(coll, pipeline, most=len(chunk) * rows_per_branch)
    return rows


async def find_windows(
    coll: AsyncCollection[D],
    *,
    match: Mapping[str, Any],
    groups: Sequence[str],
    group_field: str,
    key_field: str,
    window: Window,
    projection: Mapping[str, Any] | None = None,
) -> dict[str, list[D]]:
    """The same keyset window for each group (``group_field`` equal to it), in one command."""
    return await find_ranges(
        coll,
        queries={group: ({**match, group_field: group}, window) for group in groups},
        blank=({**match, group_field: NO_KEY}, window),
        group_field=group_field,
        key_field=key_field,
        projection=projection,
    )


async def find_ranges(
    coll: AsyncCollection[D],
    *,
    queries: Mapping[str, tuple[Mapping[str, Any], Window]],
    blank: tuple[Mapping[str, Any], Window],
    group_field: str,
    key_field: str,
    projection: Mapping[str, Any] | None = None,
) -> dict[str, list[D]]:
    """Each group's keyset window (its own filter and range), in one command of bounded,
    index-backed branches. No group's rows beyond its window are read; each group's rows come
    back in its window's order. ``blank`` is a query shaped as the others that matches nothing
    (see ``_union``)."""
    result: dict[str, list[D]] = {group: [] for group in queries}
    live = {g: (m, w) for g, (m, w) in queries.items() if not w.empty() and w.limit > 0}
    if len(live) == 1:  # one parent (the common case of a lookup): a plain, cheaper find
        ((group, (match, window)),) = live.items()
        result[group] = await find_window(
            coll, match=match, key_field=key_field, window=window, projection=projection
        )
        return result
    if not live:
        return result
    branches = [window.pipeline(match, key_field, projection) for match, window in live.values()]
    rows_per_branch = max(window.limit for _, window in live.values())
    padding = blank[1].pipeline(blank[0], key_field, projection)
    for doc in await _union(coll, branches, blank=padding, rows_per_branch=rows_per_branch):
        result[doc[group_field]].append(doc)
    for group, (_, window) in live.items():  # MongoDB does not promise $unionWith's order
        result[group].sort(key=lambda doc: doc[key_field], reverse=window.descending)
    return result


async def find_by_keys(
    coll: AsyncCollection[D],
    *,
    match: Mapping[str, Any],
    field: str,
    values: Sequence[str],
    projection: Mapping[str, Any] | None = None,
) -> dict[str, D]:
    """Documents whose unique ``field`` is one of ``values``: one equality branch per value, one
    command (per ``UNION_SIZES[-1]`` values).

    (``$in`` is a collection scan on the embedded engine; equality branches use its index.)
    """
    if not values:
        return {}
    if len(set(values)) == 1:
        doc = await coll.find_one({**match, field: values[0]}, projection)
        return {} if doc is None else {values[0]: doc}
    tail: list[Doc] = [{"$limit": 1}] + ([{"$project": dict(projection)}] if projection else [])
    branches: list[list[Doc]] = [
        [{"$match": {**match, field: value}}, *tail] for value in dict.fromkeys(values)
    ]
    blank = [{"$match": {**match, field: NO_KEY}}, *tail]
    return {doc[field]: doc for doc in await _union(coll, branches, blank=blank, rows_per_branch=1)}


def projection(*fields: str) -> dict[str, int]:
    """A projection of the fields a reader needs (decoding less is measurably cheaper).

    ``_id`` stays in: excluding it inside ``$unionWith`` branches made the embedded engine
    ~40x slower (100 branches: 1.7 s against 45 ms), and decoding it costs little.
    """
    return dict.fromkeys(fields, 1)


def sha256_hex(text: str) -> str:
    """The SHA-256 hex digest of ``text``'s UTF-8 (lone surrogates kept, as ids refuse them
    elsewhere): how API keys and persisted documents are stored."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


async def count(coll: AsyncCollection[Any], match: Mapping[str, Any]) -> int:
    """Matching documents, by the ``count`` command (``count_documents`` is slow on the engine)."""
    reply = await coll.database.command("count", coll.name, query=dict(match))
    return int(reply["n"])


@dataclass(frozen=True, slots=True)
class Lookup(Generic[D]):
    """Reads of a collection's live documents by their unique ``field``, as ``D`` (with
    ``projection``). The repositories build them (``users.LIVE_USERS``...)."""

    collection: str
    field: str
    projection: Mapping[str, Any]

    async def get(self, db: Database, *, project_id: str, values: Sequence[str]) -> dict[str, D]:
        """The live documents of a project whose ``field`` is one of ``values``, by it."""
        coll = cast("AsyncCollection[D]", db[self.collection])
        return await find_by_keys(
            coll,
            match={"project_id": project_id, "deleted_ms": 0},
            field=self.field,
            values=values,
            projection=self.projection,
        )


@dataclass(frozen=True, slots=True)
class Listing(Generic[D]):
    """A listing of a collection, read as ``D`` (with ``projection``): the documents matching
    ``match`` (flat equalities) whose ``key_field`` lies in ``keys``; every page of it is a
    window inside ``keys``. The repositories build them (``users.user_filter``...)."""

    collection: str
    match: Doc
    keys: Window
    key_field: str
    projection: Mapping[str, Any]

    async def rows(self, db: Database, window: Window) -> list[D]:
        """One window of the listing (a window inside ``keys``), in the window's order."""
        coll = cast("AsyncCollection[D]", db[self.collection])
        return await find_window(
            coll,
            match=self.match,
            key_field=self.key_field,
            window=window,
            projection=self.projection,
        )

    async def count(self, db: Database) -> int:
        """The documents of the whole listing."""
        return await count(db[self.collection], self.keys.match(self.match, self.key_field))


def metadata_equal(metadata: Mapping[str, Any] | None) -> Doc:
    """The filter for top-level metadata keys equal to ``metadata``'s (on the engine a boolean
    also matches the number: see the contract's boolean rule)."""
    return {f"metadata.{key}": value for key, value in (metadata or {}).items()}


def live_listing(
    collection: str,
    *,
    project_id: str,
    equal: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
    created_after_ms: int | None,
    created_before_ms: int | None,
    projection: Mapping[str, Any],
) -> Listing[Any]:
    """The live documents of a project in a collection keyed by ``order_key`` (users, sessions)
    whose fields equal ``equal``'s and top-level metadata keys ``metadata``'s, created strictly
    after / before the given times."""
    match: Doc = {"project_id": project_id, "deleted_ms": 0, **equal, **metadata_equal(metadata)}
    keys = created_range(created_after_ms, created_before_ms)
    return Listing(collection, match, keys, ORDER_KEY, projection)


async def insert_fresh(
    coll: AsyncCollection[D],
    doc: D,
    *,
    key: Mapping[str, Any],
    keep: frozenset[str] = frozenset(),
    what: str,
    subject: Subject,
) -> D:
    """Insert ``doc``; if a soft-deleted document holds its ``key``, start that one over as
    ``doc`` (keeping the ``keep`` fields); if a live one does, ALREADY_EXISTS."""
    try:
        await coll.insert_one(doc)
        return doc
    except DuplicateKeyError:
        pass
    existing = await coll.find_one(dict(key))
    if existing is not None and existing["deleted_ms"]:
        fresh = {k: v for k, v in doc.items() if k not in keep | {"_id", "version"}}
        fresh["version"] = existing["version"] + 1
        guard = {k: existing[k] for k in ("_id", "version", "deleted_ms")}
        reborn = await coll.find_one_and_update(
            guard, {"$set": fresh}, return_document=ReturnDocument.AFTER
        )
        if reborn is not None:
            return reborn
    raise AlreadyExists(f"{what} already exists", subject=subject)


async def insert_missing(coll: AsyncCollection[D], doc: D, *, key: Mapping[str, Any]) -> D | None:
    """``doc``, inserted (with its new ``_id``) when no document holds its ``key``; else None."""
    result = await coll.update_one(dict(key), {"$setOnInsert": doc}, upsert=True)
    if result.upserted_id is None:
        return None
    return cast("D", {**doc, "_id": result.upserted_id})


async def patch_document(
    coll: AsyncCollection[D],
    *,
    match: Mapping[str, Any],
    what: str,
    set_fields: Mapping[str, Any] | None = None,
    metadata_patch: MetadataPatch | None = None,
    revive: bool = False,
    now: int | None = None,
) -> D:
    """Set fields and merge metadata into the one document matching ``match``.

    Read, merge, write back guarded by ``version``, and retry on a version conflict, so concurrent
    merges of different keys all survive. Metadata is always written as a whole object (a boolean
    written by dotted path comes back as 1 on the embedded engine), and only once the merged
    object meets the patch's limits. With ``revive`` a soft-deleted document is brought back;
    without it, a deleted one is NOT_FOUND.
    """
    base = dict(match) if revive else {**match, "deleted_ms": 0}
    for attempt in range(PATCH_ATTEMPTS):
        current = await coll.find_one(base)
        if current is None:
            raise NotFound(f"{what} not found")
        changes: Doc = dict(set_fields or {})
        if metadata_patch is not None:
            changes["metadata"] = metadata_patch.merged_into(current.get("metadata") or {})
        if revive and current["deleted_ms"]:
            changes.update(deleted_ms=0, deletion_id="")
        changes["updated_ms"] = now or now_ms()
        changes["version"] = current["version"] + 1
        updated = await coll.find_one_and_update(
            {"_id": current["_id"], "version": current["version"]},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            return updated
        await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
    raise Conflict(f"{what} is being changed by too many writers at once; try again")
