"""Every query the data layer sends is served by an index declared for MongoDB, and every
batched read is one of a closed set of shapes that the server runs once at start.

A workload runs through the API (every mutation, lookups, connections with filters and cursors,
nested batches, purge, erasure, keys) while a command listener records each filter the
application sends; each distinct shape (collection, equality fields, range and sort fields) must
be served by one of ``MONGODB_INDEXES``: its leading keys are equality fields of the shape and
the key after them, if the shape has a range or sort, is that field. ``deleted_ms: 0`` (and any
metadata equality) is a residual filter on the rows the index selects, not a way in.

A search (``$text``) is served by the text index (``MEMORY_TEXT_INDEX``) and has one shape:
``$text`` beside a flat filter (``project_id``, ``deleted_ms``, maybe ``session_id`` or
``session_id: {$in}``, ``role_type``, ``role``, ``metadata.<key>``, a ``created_ms`` range), sorted
by text score, then ``created_ms`` and ``uuid`` descending: no ``$and``/``$or`` (slow on the
engine), no regex.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pymongo import monitoring

from memvault import runtime
from memvault.config import Settings
from memvault.db import api_keys
from memvault.db.engine import connect
from memvault.db.indexes import MEMORY_TEXT_INDEX, MONGODB_INDEXES, Index
from memvault.db.memories import MEMORY_SHAPES, memory_projection
from memvault.db.purge import purge
from memvault.db.queries import UNION_SIZES
from memvault.main import create_app
from tests.support.asgi import running
from tests.support.graphql import GraphQLClient
from tests.support.readme import fenced

RANGE_OPERATORS = {"$gt", "$gte", "$lt", "$lte"}
POINT_OPERATORS = {"$in", "$eq"}


@dataclasses.dataclass(frozen=True)
class Shape:
    collection: str
    equality: frozenset[str]
    ranges: frozenset[str]

    def __str__(self) -> str:
        return f"{self.collection}: eq {sorted(self.equality)} range/sort {sorted(self.ranges)}"


def shape_of(collection: str, query: dict[str, Any], sort: dict[str, Any] | None = None) -> Shape:
    equality, ranges = set(), set()
    for field, value in query.items():
        if isinstance(value, dict) and set(value) & RANGE_OPERATORS:
            ranges.add(field)
        elif not (isinstance(value, dict) and set(value) - POINT_OPERATORS):
            equality.add(field)
    ranges |= set(sort or {})
    equality -= {"deleted_ms"}  # "live": a residual filter, selective only as a purge range
    return Shape(collection, frozenset(equality), frozenset(ranges - equality))


def shapes_in_pipeline(collection: str, pipeline: list[dict[str, Any]]) -> list[Shape]:
    shapes, match, sort = [], None, None
    for stage in pipeline:
        if "$match" in stage:
            match = stage["$match"]
        elif "$sort" in stage:
            sort = stage["$sort"]
        elif "$unionWith" in stage:
            inner = stage["$unionWith"]
            shapes += shapes_in_pipeline(inner["coll"], inner["pipeline"])
    if match is not None:
        shapes.append(shape_of(collection, match, sort))
    return shapes


def serves(index: Index, shape: Shape) -> bool:
    """Leading keys are equality fields of the shape (at least one, or a range first), and the
    key after them is the shape's range or sort field when it has one."""
    if index.collection != shape.collection:
        return False
    prefix = 0
    while prefix < len(index.keys) and index.keys[prefix] in shape.equality:
        prefix += 1
    after = index.keys[prefix] if prefix < len(index.keys) else None
    if shape.ranges:
        return after in shape.ranges and len(shape.ranges) == 1
    return prefix > 0


def serving_index(shape: Shape) -> Index | None:
    if "_id" in shape.equality:
        return Index(shape.collection, ("_id",))
    candidates = [i for i in MONGODB_INDEXES if serves(i, shape)]
    return max(candidates, key=lambda i: (matched(i, shape), -len(i.keys)), default=None)


def matched(index: Index, shape: Shape) -> int:
    """How many leading keys of ``index`` the shape pins (equality, then its range)."""
    count = 0
    for key in index.keys:
        if key not in shape.equality | shape.ranges:
            break
        count += 1
    return count


SEARCH_FIELDS = {"project_id", "deleted_ms", "session_id", "role_type", "role", "created_ms"}
SEARCH_SORT = [("score", {"$meta": "textScore"}), ("created_ms", -1), ("uuid", -1)]


def is_search_shape(collection: str, query: dict[str, Any], sort: dict[str, Any]) -> bool:
    """The one shape of a search: see the module's docstring."""
    fields = set(query) - {"$text"}
    flat = all(f in SEARCH_FIELDS or f.startswith("metadata.") for f in fields)
    session = query.get("session_id")
    return (
        collection == MEMORY_TEXT_INDEX.collection
        and set(query["$text"]) == {"$search"}
        and {"project_id", "deleted_ms"} <= fields
        and flat
        and (not isinstance(session, dict) or set(session) == {"$in"})
        and (
            not isinstance(query.get("created_ms"), dict)
            or set(query["created_ms"]) <= {"$gt", "$lt"}
        )
        and list(sort.items()) == SEARCH_SORT
    )


class ShapeRecorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.shapes: set[Shape] = set()
        self.searches: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command, name = event.command, event.command_name
        collection = command.get(name)
        if name == "find" and "$text" in command.get("filter", {}):
            self.searches.append((collection, command["filter"], command.get("sort", {})))
        elif name == "find":
            self.shapes.add(shape_of(collection, command.get("filter", {}), command.get("sort")))
        elif name == "aggregate":
            self.shapes.update(shapes_in_pipeline(collection, command["pipeline"]))
        elif name == "count" or name == "findAndModify":
            self.shapes.add(shape_of(collection, command.get("query", {})))
        elif name in {"update", "delete"}:
            for statement in command.get("updates", command.get("deletes", [])):
                self.shapes.add(shape_of(collection, statement["q"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest_asyncio.fixture(loop_scope="session")
async def recorded(
    mongo_uri: str, settings: Settings
) -> AsyncIterator[tuple[GraphQLClient, ShapeRecorder, Any]]:
    recorder = ShapeRecorder()
    client = connect(mongo_uri, event_listeners=[recorder])
    app = create_app(settings, client=client)
    try:
        async with running(app) as served:
            transport = httpx.ASGITransport(app=served)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                yield GraphQLClient(http), recorder, client[settings.database]
    finally:
        await client.close()


WORKLOAD = [
    'mutation { createUser(input: {userId: "ann", metadata: {team: "red"}}) { userId } }',
    'mutation { createSession(input: {sessionId: "s0", userId: "ann"}) { sessionId } }',
    'mutation { deleteSession(sessionId: "s0") { deleted } }',
    'mutation { createSession(input: {sessionId: "s0", userId: "ann"}) { sessionId } }',
    'mutation { addMemories(input: {sessionId: "s0", memories: [{uuid: "x", roleType: USER, content: "a"}]}) { memories { uuid } } }',
    'mutation { addMemories(input: {sessionId: "s0", memories: [{uuid: "x", roleType: USER, content: "a"}, {roleType: USER, content: "b"}]}) { memories { uuid } } }',
    'mutation { addMemories(input: {sessionId: "s1", userId: "ann", memories: [{uuid: "y", roleType: USER, content: "a"}]}) { memories { uuid } } }',
    'mutation { addMemories(input: {sessionId: "s2", memories: [{uuid: "x", roleType: USER, content: "a"}]}) { memories { uuid } } }',
    "{ users(first: 1) { totalCount edges { cursor } } }",
    '{ users(last: 1, filter: {createdAfter: "2020-01-01T00:00:00Z", metadata: {team: "red"}}) { totalCount pageInfo { hasNextPage hasPreviousPage } nodes { userId } } }',
    '{ sessions(first: 1, filter: {userId: "ann"}) { totalCount pageInfo { hasNextPage endCursor } } }',
    '{ sessions(last: 1, filter: {createdBefore: "2100-01-01T00:00:00Z"}) { totalCount pageInfo { hasPreviousPage } } }',
    '{ u1: user(userId: "ann") { sessions(first: 1) { totalCount pageInfo { hasNextPage } nodes { memoryCount user { userId } memories(last: 1) { pageInfo { hasPreviousPage } nodes { session { sessionId } } } } } } u2: user(userId: "bob") { userId } }',
    '{ s: session(sessionId: "s0") { memories(first: 1) { pageInfo { hasNextPage endCursor } } } memory(uuid: "x") { uuid } m2: memory(uuid: "y") { uuid } }',
    'mutation { updateMemory(input: {uuid: "x", metadata: {a: 1}}) { uuid } deleteMemory(uuid: "x") { deleted } }',
    'mutation { deleteSession(sessionId: "s1") { deleted } }',
    'mutation { restoreSession(sessionId: "s1") { sessionId } }',
    'mutation { upsertSession(input: {sessionId: "s3", userId: "ann", metadata: {a: 1}}) { sessionId } }',
    'mutation { upsertUser(input: {userId: "bob"}) { userId } updateUser(input: {userId: "bob", email: "b@x.io"}) { userId } }',
    '{ searchMemories(query: "a -b \\"c d\\"", filter: {sessionId: "s0", roleType: USER, role: "r", metadata: {k: 1}, createdAfter: "2020-01-01T00:00:00Z", createdBefore: "2100-01-01T00:00:00Z"}) { edges { score } } }',
    '{ user(userId: "ann") { searchMemories(query: "a", first: 1) { pageInfo { endCursor } } } }',
    '{ session(sessionId: "s1") { searchMemories(query: "a") { nodes { uuid } } } }',
    'mutation { deleteUser(userId: "ann") { deleted } }',
    'mutation { forgetUser(userId: "ann") { deleted } }',
]


async def test_every_query_shape_is_index_backed_on_mongodb(
    recorded: tuple[GraphQLClient, ShapeRecorder, Any],
) -> None:
    gql, recorder, db = recorded
    for document in WORKLOAD + fenced("graphql"):
        await gql.raw(document)  # some are meant to fail (e.g. NOT_FOUND); their reads count too
    doc, key = await api_keys.create_key(db, project_id="p", scope="read")
    await gql.raw("{ __typename }", headers={"Authorization": f"Bearer {key}"})
    await api_keys.revoke_key(db, key_id=doc["key_id"])
    await purge(db, older_than_ms=0)

    table, unserved = [], []
    for shape in sorted(recorder.shapes, key=str):
        if shape.collection not in {"users", "sessions", "memories", "api_keys"}:
            continue
        index = serving_index(shape)
        (unserved if index is None else table).append((shape, index))
    print("\nquery shape -> index (MongoDB)")
    for shape, index in table:
        print(f"  {shape}  ->  {index.keys if index else None}")
    assert not unserved, "\n".join(str(shape) for shape, _ in unserved)
    assert len(table) >= 20  # the workload really exercised the data layer
    assert len(recorder.searches) >= 3
    odd = [s for s in recorder.searches if not is_search_shape(*s)]
    assert not odd, odd


# ---------------------------------------------------------------------------------------------
# The embedded engine compiles each distinct statement once, and a union's compile costs up to
# seconds: every batched read is one of a closed set of shapes, all run once at start.

FIELDS = ("id", "uuid", "seq", "role", "roleType", "content", "metadata", "tokenCount",
          "createdAt", "updatedAt", "session { sessionId }")  # fmt: skip


def skeleton(value: Any, key: str = "") -> Any:
    """What the engine compiles of a command: its structure, with values as placeholders (a
    ``$limit`` and every string are parameters; sort directions and projections are not)."""
    if isinstance(value, dict):
        return tuple((k, skeleton(v, k)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(skeleton(v) for v in value)
    if isinstance(value, str) or key == "$limit":
        return type(value).__name__
    return value


def branches(pipeline: list[dict[str, Any]]) -> int:
    return 1 + sum(branches(s["$unionWith"]["pipeline"]) for s in pipeline if "$unionWith" in s)


class UnionRecorder(monitoring.CommandListener):
    """The batched reads (aggregates with ``$unionWith``) the application sends."""

    def __init__(self) -> None:
        self.pipelines: list[tuple[str, list[dict[str, Any]]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "aggregate":
            pipeline = event.command["pipeline"]
            if any("$unionWith" in stage for stage in pipeline):
                self.pipelines.append((event.command["aggregate"], pipeline))

    def skeletons(self) -> set[Any]:
        return {(collection, skeleton(p)) for collection, p in self.pipelines}

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def memory_projections(pipeline: list[dict[str, Any]], collection: str) -> list[dict[str, Any]]:
    found = [s["$project"] for s in pipeline if "$project" in s and collection == "memories"]
    for stage in pipeline:
        if "$unionWith" in stage:
            inner = stage["$unionWith"]
            found += memory_projections(inner["pipeline"], inner["coll"])
    return found


def shapes_workload(rng: random.Random) -> list[str]:
    """Reads of random subsets of Memory fields along every path, over 1 to 22 parents."""
    work = []
    for _ in range(8):
        sel = " ".join(rng.sample(FIELDS, rng.randint(1, 5)))
        user = f"u{rng.randint(1, 3)}"
        work += [
            f'{{ session(sessionId: "u2-s1") {{ memories(last: 3) {{ nodes {{ {sel} }} }} }} }}',
            f'{{ session(sessionId: "u3-s0") {{ sessionId memories(first: 2) {{ edges {{ node {{ {sel} }} }} }} }} }}',
            f"{{ users(first: 10) {{ nodes {{ sessions(first: 20) {{ nodes {{ memories(last: 2) {{ nodes {{ {sel} }} }} }} }} }} }} }}",
            f'{{ user(userId: "{user}") {{ sessions(last: 9) {{ nodes {{ user {{ userId }} memories(first: 2) {{ nodes {{ {sel} }} }} }} }} }} }}',
        ]  # fmt: skip
    aliases = " ".join(
        f'm{n}: memory(uuid: "u3-s{n}-0") {{ seq session {{ sessionId }} }}' for n in range(7)
    )
    return [
        *work,
        "{ sessions(first: 30) { nodes { user { userId } } } }",
        f"{{ {aliases} }}",
        '{ a: node(id: "VXNlcjp1MA==") { id } b: node(id: "VXNlcjp1MQ==") { id } }',
    ]


@pytest.mark.slow
async def test_batched_reads_are_a_closed_set_warmed_at_start(
    embedded: bool,
    mongo_uri: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 13, item 11: a query selecting a new subset of Memory fields, or a page of a new
    number of parents, used to send a statement the engine had never compiled (seconds of its
    CPU with every other command waiting). Every batched read is now one of the shapes the
    server runs once at start: one of two memory projections, one of ``UNION_SIZES`` branches."""
    if not embedded:
        pytest.skip("the warm-up is for the embedded engine")
    recorder = UnionRecorder()
    real_connect = runtime.connect

    def recording(uri: str, *, event_listeners: Any = (), **options: Any) -> Any:
        return real_connect(uri, **options, event_listeners=[*event_listeners, recorder])

    monkeypatch.setattr(runtime, "connect", recording)
    app = create_app(dataclasses.replace(settings, mongodb_uri=mongo_uri))
    async with running(app) as served:
        # unions of up to 20 branches are warmed before serving; the ten largest compile on first
        # use in a server, and here once more by hand, so that every shape must be a known one
        await runtime.warm(served.runtime.db, UNION_SIZES[-1:])
        warmed = recorder.skeletons()
        recorder.pipelines.clear()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served), base_url="http://t"
        ) as http:
            gql = GraphQLClient(http)
            sizes = (1, 3, 6, 12)
            for u, count in enumerate(sizes):
                await gql.ok(f'mutation {{ createUser(input: {{userId: "u{u}"}}) {{ userId }} }}')
                for s in range(count):
                    memories = [
                        {"uuid": f"u{u}-s{s}-{m}", "roleType": "USER", "content": f"c{m}"}
                        for m in range(3 if s else 150)  # 150: the uuid lookup of a long call
                    ]
                    add = {"sessionId": f"u{u}-s{s}", "userId": f"u{u}", "memories": memories}
                    await gql.ok(
                        "mutation($i: AddMemoriesInput!) { addMemories(input: $i) { session { sessionId } } }",
                        {"i": add},
                    )
            for document in shapes_workload(random.Random(13)):
                await gql.ok(document)
    sent = recorder.pipelines
    assert sum(c == "memories" for c, _ in sent) > 20, "the workload sent few batched reads"
    assert {branches(p) for _, p in sent} <= set(UNION_SIZES)
    views = [memory_projection(shape) for shape in MEMORY_SHAPES]
    assert all(p in views for c, pipe in sent for p in memory_projections(pipe, c))
    unwarmed = recorder.skeletons() - warmed
    assert not unwarmed, f"{len(unwarmed)} batched read shapes were not warmed at start"
    with capsys.disabled():
        print(
            f"\n[{len(warmed)} batched read shapes warmed at start; the workload sent"
            f" {len(sent)} batched reads in {len(recorder.skeletons())} of them]"
        )
