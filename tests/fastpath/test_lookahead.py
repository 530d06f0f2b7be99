"""Memory reads (and listings of sessions) fetch only the stored fields their query selects, and
answer the same."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import strawberry
from graphql import FieldNode, OperationDefinitionNode, parse
from pymongo import monitoring
from pymongo.asynchronous.database import AsyncDatabase
from strawberry.schema.config import StrawberryConfig

from memvault.config import Settings
from memvault.db import sessions as session_repo
from memvault.db.memories import (
    CHAT_FIELDS,
    MEMORY_KEYS,
    MEMORY_PROJECTION,
    MEMORY_SHAPES,
    MEMORY_SOURCES,
    memory_shape,
)
from memvault.schema import schema
from memvault.schema.context import Context
from memvault.schema.fastpath import lookahead
from memvault.schema.fastpath.lookahead import domain_names, fields_under
from memvault.schema.loaders import DataLoaders
from memvault.schema.mutation import Mutation
from memvault.schema.query import Query
from memvault.schema.types import SCALARS, Memory, Session, User
from memvault.security import OPEN
from tests.support.commands import listened_app
from tests.support.graphql import GraphQLClient

ADD = """mutation($input: AddMemoriesInput!) { addMemories(input: $input) { session { sessionId } } }"""


class MemoryReads(monitoring.CommandListener):
    """The projections of the reads sent to the memories collection (directly or in a union),
    and of the finds sent to the sessions collection (``sessions``)."""

    def __init__(self) -> None:
        self.projections: list[set[str]] = []
        self.sessions: list[set[str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name == "find" and command.get("find") == "memories":
            self.projections.append(set(command.get("projection") or {}))
        if event.command_name == "find" and command.get("find") == "sessions":
            self.sessions.append(set(command.get("projection") or {}))
        if event.command_name == "aggregate":
            self.projections += [set(p) for p in _memory_projections(command["pipeline"])]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _memory_projections(pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for stage in pipeline:
        union = stage.get("$unionWith")
        if union and union["coll"] == "memories":
            branch = union["pipeline"]
            found += [s["$project"] for s in branch if "$project" in s]
            found += _memory_projections(branch)
    return found


@pytest_asyncio.fixture(loop_scope="session")
async def watched(
    mongo_uri: str, db: AsyncDatabase[dict[str, Any]], settings: Settings
) -> AsyncIterator[tuple[GraphQLClient, MemoryReads]]:
    reads = MemoryReads()
    async with listened_app(mongo_uri, settings, reads) as gql:
        await gql.ok('mutation { createUser(input: {userId: "la-user"}) { userId } }')
        for s in range(3):
            memories = [
                {
                    "roleType": "USER",
                    "role": f"r{m}",
                    "content": f"s{s}-m{m}",
                    "metadata": {"n": m},
                    "tokenCount": m,
                }
                for m in range(4)
            ]
            session = {"sessionId": f"la-{s}", "userId": "la-user", "memories": memories}
            await gql.ok(ADD, {"input": session})
        reads.projections.clear()
        reads.sessions.clear()
        yield gql, reads


def test_every_memory_field_has_its_sources() -> None:
    """A Memory field added to the schema must say (by its domain name) which stored fields
    it reads."""
    memory = schema._schema.type_map["Memory"]
    names = domain_names(schema)
    assert {names[name] for name in memory.fields} == set(MEMORY_SOURCES)  # type: ignore[attr-defined]


def test_every_session_field_has_its_sources() -> None:
    """A Session field added to the schema must say (by its domain name) which stored fields it
    reads, or a listing would leave them out."""
    session = schema._schema.type_map["Session"]
    names = domain_names(schema, "Session")
    assert {names[name] for name in session.fields} == set(session_repo.SESSION_SOURCES)  # type: ignore[attr-defined]


def test_every_selection_gets_one_of_the_few_session_views() -> None:
    """A page of ids reads the keys alone; any other field, the whole view: a closed set."""
    ids_only = session_repo.LISTED_IDS
    assert session_repo.stored_fields([]) == ids_only
    assert session_repo.stored_fields(["id", "session_id", "search_memories"]) == ids_only
    for name, sources in session_repo.SESSION_SOURCES.items():
        shape = session_repo.stored_fields(["session_id", name])
        assert shape in session_repo.SESSION_SHAPES
        assert shape == (ids_only if not sources else None), name
    assert session_repo.stored_fields(["something_new"]) is None


def _connection_nodes(document: str) -> tuple[list[FieldNode], dict[str, Any]]:
    parsed = parse(document)
    operation = next(d for d in parsed.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {d.name.value: d for d in parsed.definitions if hasattr(d, "type_condition")}
    field = operation.selection_set.selections[0]
    assert isinstance(field, FieldNode)
    return [field], fragments


@pytest.mark.parametrize(
    ("document", "extra"),
    [
        ("{ m { nodes { content } } }", {"content"}),
        ("{ m { nodes { __typename content } } }", {"content"}),
        ("{ m { totalCount pageInfo { hasNextPage } } }", set()),
        ("{ m { edges { cursor node { id createdAt } } } }", {"created_ms"}),
        ("{ m { nodes { ... on Memory { role } ...F } } } fragment F on Memory { metadata }",
         {"role", "metadata"}),
        ("{ m { nodes { content @skip(if: true) session { sessionId } } } }", {"content"}),
        ("{ m { ...C } } fragment C on MemoryConnection { nodes { tokenCount updatedAt } }",
         {"token_count", "updated_ms"}),
    ],
)  # fmt: skip
def test_fields_under_a_selection(document: str, extra: set[str]) -> None:
    nodes, fragments = _connection_nodes(document)
    assert fields_under(nodes, fragments, domain_names(schema)) == frozenset(MEMORY_KEYS) | extra


def test_an_unknown_field_means_the_full_view() -> None:
    nodes, fragments = _connection_nodes("{ m { nodes { content somethingNew } } }")
    assert fields_under(nodes, fragments, domain_names(schema)) is None


NESTED = """{ users(first: 5) { nodes { sessions(first: 5) { nodes {
    memories(last: 2) { nodes { content } } } } } } }"""
EVERYTHING = """{ users(first: 5) { nodes { sessions(first: 5) { nodes {
    memories(last: 2) { edges { cursor node { id uuid seq role roleType content metadata
      tokenCount createdAt updatedAt session { sessionId } } } } } } } } }"""


@pytest.mark.fast_path  # projections are the fast path's
async def test_nested_read_fetches_the_smallest_view(
    watched: tuple[GraphQLClient, MemoryReads],
) -> None:
    gql, reads = watched
    data = await gql.ok(NESTED)
    sessions = data["users"]["nodes"][0]["sessions"]["nodes"]
    assert [[m["content"] for m in s["memories"]["nodes"]] for s in sessions] == [
        [f"s{s}-m2", f"s{s}-m3"] for s in range(3)
    ]
    assert reads.projections, "no memories read was seen"
    assert all(p == set(CHAT_FIELDS) for p in reads.projections)


async def test_every_field_still_answers(watched: tuple[GraphQLClient, MemoryReads]) -> None:
    gql, reads = watched
    data = await gql.ok(EVERYTHING)
    edge = data["users"]["nodes"][0]["sessions"]["nodes"][1]["memories"]["edges"][1]
    node = edge["node"]
    assert (node["content"], node["role"], node["roleType"], node["metadata"]) == (
        "s1-m3", "r3", "USER", {"n": 3},
    )  # fmt: skip
    assert (node["seq"], node["tokenCount"], node["session"]) == (4, 3, {"sessionId": "la-1"})
    assert node["createdAt"].endswith("Z")
    assert node["updatedAt"] == node["createdAt"]
    assert all((edge["cursor"], node["id"], node["uuid"]))
    assert {"metadata", "created_ms"} <= reads.projections[0]


async def test_siblings_selecting_different_fields_each_get_theirs(
    watched: tuple[GraphQLClient, MemoryReads],
) -> None:
    gql, _ = watched
    data = await gql.ok(
        """{ session(sessionId: "la-0") { sessionId
            a: memories(last: 1) { nodes { content } }
            b: memories(last: 1) { nodes { metadata role } } } }"""
    )
    session = data["session"]
    assert session["a"]["nodes"] == [{"content": "s0-m3"}]
    assert session["b"]["nodes"] == [{"metadata": {"n": 3}, "role": "r3"}]


@pytest.mark.fast_path  # projections are the fast path's
async def test_recent_window_reads_only_what_it_shows(
    watched: tuple[GraphQLClient, MemoryReads],
) -> None:
    gql, reads = watched
    data = await gql.ok(
        """{ session(sessionId: "la-2") {
            memories(last: 2) { nodes { role content createdAt } } } }"""
    )
    assert [n["content"] for n in data["session"]["memories"]["nodes"]] == ["s2-m2", "s2-m3"]
    assert [n["role"] for n in data["session"]["memories"]["nodes"]] == ["r2", "r3"]
    assert reads.projections == [set(CHAT_FIELDS)]


@pytest.mark.fast_path  # projections are the fast path's
async def test_selection_is_mapped_once_per_request(
    watched: tuple[GraphQLClient, MemoryReads], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prefetch of a recent window and the field it primes share one mapping; so do the
    hundred sessions of a nested query."""
    gql, _ = watched
    walked: list[int] = []
    original = lookahead._fields

    def counting(*args: Any) -> Any:
        walked.append(1)
        return original(*args)

    monkeypatch.setattr(lookahead, "_fields", counting)
    # one mapping of `memories(...) { nodes { content } }` walks two selection sets
    await gql.ok('{ session(sessionId: "la-1") { memories(last: 2) { nodes { content } } } }')
    assert len(walked) == 2
    walked.clear()
    await gql.ok(NESTED)
    assert len(walked) == 2


def test_every_selection_gets_one_of_the_few_memory_views() -> None:
    """Whatever subset of Memory fields a query selects, its read asks for one of
    ``MEMORY_SHAPES`` holding them: a closed set, so the engine compiles no new projection."""
    stored = sorted({s for sources in MEMORY_SOURCES.values() for s in sources} - set(MEMORY_KEYS))
    for picked in itertools.chain.from_iterable(
        itertools.combinations(stored, n) for n in range(len(stored) + 1)
    ):
        fields = frozenset(MEMORY_KEYS) | set(picked)
        shape = memory_shape(fields)
        assert shape in MEMORY_SHAPES
        assert fields <= (shape if shape is not None else set(MEMORY_PROJECTION))
    assert memory_shape(frozenset(MEMORY_KEYS) | {"content", "role"}) == CHAT_FIELDS
    assert memory_shape(frozenset(MEMORY_KEYS) | {"metadata"}) is None
    assert memory_shape(None) is None


LISTING_IDS = """{ sessions(first: 2) { nodes { sessionId id __typename }
    edges { cursor node { sessionId } } pageInfo { hasNextPage endCursor } } }"""


@pytest.mark.fast_path  # projections are the fast path's
async def test_a_listing_of_ids_reads_only_the_keys(
    watched: tuple[GraphQLClient, MemoryReads],
) -> None:
    gql, reads = watched
    data = await gql.ok(LISTING_IDS)
    assert [n["sessionId"] for n in data["sessions"]["nodes"]] == ["la-0", "la-1"]
    assert data["sessions"]["pageInfo"]["hasNextPage"] is True
    assert reads.sessions == [set(session_repo.SESSION_KEYS)]
    reads.sessions.clear()
    data = await gql.ok("{ sessions(first: 2) { nodes { sessionId memoryCount } } }")
    assert [n["memoryCount"] for n in data["sessions"]["nodes"]] == [4, 4]
    assert reads.sessions == [set(session_repo.SESSION_PROJECTION)]


# Differential: the served path (executor shortcuts, lookahead projections, the recent-window
# prefetch) must answer exactly what plain Strawberry execution answers reading whole documents.
A = "fragment A on Session { memories(first: 2) { nodes { seq } } }"
B = "fragment B on Session { memories(first: 2) { nodes { content } } }"
M = "fragment M on Session { memories(first: 2) { nodes { metadata tokenCount updatedAt } } }"
S0 = 'session(sessionId: "la-0")'
U = 'user(userId: "la-user")'
ISSUE_SESSION = f"{{ a: {S0} {{ ...A }} b: {S0} {{ ...A ...B }} }} {A} {B}"
ISSUE_USER = (
    f"{{ a: {U} {{ sessions {{ nodes {{ ...A }} }} }}"
    f" b: {U} {{ sessions {{ nodes {{ ...A ...B }} }} }} }} {A} {B}"
)
BOTH_WAYS = {"yes": True, "no": False}
DIFFERENTIAL: list[tuple[str, str, dict[str, Any]]] = [
    ("issue, session", ISSUE_SESSION, {}),
    ("issue, user sessions", ISSUE_USER, {}),
    ("issue, one user", f"{{ {U} {{ a: sessions {{ nodes {{ ...A }} }} b: sessions {{ nodes {{ ...A ...B }} }} }} }} {A} {B}", {}),
    ("fragments across views", f"{{ a: {S0} {{ ...A }} b: {S0} {{ ...A ...M }} }} {A} {M}", {}),
    ("fragments across views, reversed", f"{{ a: {S0} {{ ...A ...M }} b: {S0} {{ ...A }} }} {A} {M}", {}),
    ("user sessions across views", f"{{ a: {U} {{ sessions {{ nodes {{ ...A }} }} }} b: {U} {{ sessions {{ nodes {{ ...M ...A }} }} }} }} {A} {M}", {}),
    ("user and session share a fragment", f'{{ {U} {{ sessions {{ nodes {{ ...A }} }} }} session(sessionId: "la-1") {{ ...A ...M }} }} {A} {M}', {}),
    ("aliased memories", f"{{ {S0} {{ x: memories(last: 2) {{ nodes {{ seq }} }} y: memories(last: 2) {{ nodes {{ metadata role }} }} }} }}", {}),
    ("aliased sessions, recent windows", f"{{ x: {S0} {{ memories(last: 2) {{ nodes {{ seq }} }} }} y: {S0} {{ memories(last: 2) {{ nodes {{ metadata role }} }} }} }}", {}),
    ("aliased memories under user", f"{{ {U} {{ sessions {{ nodes {{ sessionId x: memories(last: 1) {{ nodes {{ seq }} }} y: memories(last: 1) {{ nodes {{ metadata }} }} }} }} }} }}", {}),
    ("inline fragment", f"{{ a: {S0} {{ memories(first: 2) {{ nodes {{ seq }} }} }} b: {S0} {{ memories(first: 2) {{ nodes {{ seq }} }} ... on Session {{ memories(first: 2) {{ nodes {{ metadata }} }} }} }} }}", {}),
    ("inline fragment in nodes", f"{{ a: {S0} {{ memories(last: 2) {{ nodes {{ seq }} }} }} b: {S0} {{ memories(last: 2) {{ nodes {{ seq ... on Memory {{ tokenCount }} }} }} }} }}", {}),
    ("edges and nodes", f"{{ a: {S0} {{ memories(last: 2) {{ edges {{ node {{ seq }} }} }} }} b: {S0} {{ memories(last: 2) {{ edges {{ cursor node {{ seq }} }} nodes {{ metadata }} }} }} }}", {}),
    ("listing of ids", LISTING_IDS, {}),
    ("listing, one alias asks more", "{ a: sessions(first: 2) { nodes { sessionId } } b: sessions(first: 2) { nodes { ...S } } } fragment S on Session { sessionId userId memoryCount metadata createdAt updatedAt }", {}),
    ("listing, inline fragment", "{ sessions(last: 2) { edges { cursor node { id ... on Session { userId } } } pageInfo { hasPreviousPage startCursor } } }", {}),
    ("listing, nested memories", f"{{ sessions(first: 3) {{ nodes {{ sessionId ...A }} }} }} {A}", {}),
    *(
        (
            f"@include/@skip {variables}",
            f"query($yes: Boolean!, $no: Boolean!) {{ a: {S0} {{ ...A }}"
            f" b: {S0} {{ ...A ...M @include(if: $yes) }} c: {S0} {{ ...A ...M @skip(if: $yes) }}"
            f" d: {S0} {{ memories(first: 2) {{ nodes {{ seq metadata @include(if: $no) content @skip(if: $no) }} }} }}"
            f" e: {U} {{ sessions {{ nodes {{ ...A ... on Session @include(if: $yes) {{ ...M }} }} }} }} }} {A} {M}",
            variables,
        )
        for variables in (BOTH_WAYS, {"yes": False, "no": True})
    ),
]  # fmt: skip


def _plain_schema() -> strawberry.Schema:
    """memvault's types executed by Strawberry and graphql-core alone: no executor shortcuts,
    no lean resolvers."""
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        types=[User, Session, Memory],
        config=StrawberryConfig(scalar_map=SCALARS, disable_field_suggestions=True),
    )


@pytest.mark.parametrize(
    ("name", "document", "variables"), DIFFERENTIAL, ids=[case[0] for case in DIFFERENTIAL]
)
async def test_same_answer_as_plain_execution_of_whole_documents(
    watched: tuple[GraphQLClient, MemoryReads],
    db: AsyncDatabase[dict[str, Any]],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    document: str,
    variables: dict[str, Any],
) -> None:
    gql, _ = watched
    served = await gql.raw(document, variables)
    context = Context(
        request=None,  # type: ignore[arg-type]  # no resolver reads it
        db=db,
        settings=settings,
        principal=OPEN,
        request_id="-",
        loaders=DataLoaders(db=db, project_id=OPEN.project_id),
    )
    with monkeypatch.context() as patch:
        patch.setattr(lookahead, "fields_under", lambda *_: None)  # every read: whole documents
        plain = await _plain_schema().execute(
            document, variable_values=variables, context_value=context
        )
    assert not plain.errors, plain.errors
    assert served == {"data": json.loads(json.dumps(plain.data))}


async def test_fragment_spread_in_two_places_answers_both(
    watched: tuple[GraphQLClient, MemoryReads],
) -> None:
    """Issue 13, item 5: ``b`` merges ``...A`` and ``...B``; it used to get ``a``'s projection,
    then null with INTERNAL_SERVER_ERROR (``Cannot return null for non-nullable field
    Memory.content``)."""
    gql, _ = watched
    first_two = [{"seq": 1, "content": "s0-m0"}, {"seq": 2, "content": "s0-m1"}]
    data = await gql.ok(ISSUE_SESSION)
    assert data["a"]["memories"]["nodes"] == [{"seq": m["seq"]} for m in first_two]
    assert data["b"]["memories"]["nodes"] == first_two
    data = await gql.ok(ISSUE_USER)
    sessions = data["b"]["sessions"]["nodes"]
    assert [s["memories"]["nodes"][1]["content"] for s in sessions] == ["s0-m1", "s1-m1", "s2-m1"]
    assert data["a"]["sessions"]["nodes"][0]["memories"]["nodes"] == [{"seq": 1}, {"seq": 2}]
