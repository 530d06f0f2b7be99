"""Memory reads fetch only the stored fields their query selects, and answer the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from graphql import FieldNode, OperationDefinitionNode, parse
from pymongo import monitoring
from pymongo.asynchronous.database import AsyncDatabase

from memvault.config import Settings
from memvault.schema import lookahead, schema
from memvault.schema.lookahead import MEMORY_KEYS, MEMORY_SOURCES, fields_under
from tests.conftest import GraphQLClient
from tests.factories import listened_app

ADD = """mutation($input: AddMemoriesInput!) { addMemories(input: $input) { session { sessionId } } }"""


class MemoryReads(monitoring.CommandListener):
    """The projections of the reads sent to the memories collection (directly or in a union)."""

    def __init__(self) -> None:
        self.projections: list[set[str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name == "find" and command.get("find") == "memories":
            self.projections.append(set(command.get("projection") or {}))
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
        yield gql, reads


def test_every_memory_field_has_its_sources() -> None:
    """A Memory field added to the schema must say which stored fields it reads."""
    memory = schema._schema.type_map["Memory"]
    assert set(MEMORY_SOURCES) == set(memory.fields) | {"__typename"}  # type: ignore[attr-defined]


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
    assert fields_under(nodes, fragments) == frozenset(MEMORY_KEYS) | extra


def test_an_unknown_field_means_the_full_view() -> None:
    nodes, fragments = _connection_nodes("{ m { nodes { content somethingNew } } }")
    assert fields_under(nodes, fragments) is None


NESTED = """{ users(first: 5) { nodes { sessions(first: 5) { nodes {
    memories(last: 2) { nodes { content } } } } } } }"""
EVERYTHING = """{ users(first: 5) { nodes { sessions(first: 5) { nodes {
    memories(last: 2) { edges { cursor node { id uuid seq role roleType content metadata
      tokenCount createdAt updatedAt session { sessionId } } } } } } } } }"""


async def test_nested_read_fetches_only_content(
    watched: tuple[GraphQLClient, MemoryReads],
) -> None:
    gql, reads = watched
    data = await gql.ok(NESTED)
    sessions = data["users"]["nodes"][0]["sessions"]["nodes"]
    assert [[m["content"] for m in s["memories"]["nodes"]] for s in sessions] == [
        [f"s{s}-m2", f"s{s}-m3"] for s in range(3)
    ]
    assert reads.projections, "no memories read was seen"
    assert all(p == set(MEMORY_KEYS) | {"content"} for p in reads.projections)


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
    assert reads.projections == [set(MEMORY_KEYS) | {"role", "content", "created_ms"}]


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
