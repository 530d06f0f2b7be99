"""Each distinct document is parsed and validated once, and its limits still apply."""

from __future__ import annotations

import dataclasses
import gc
import sys
import tracemalloc
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from memvault.config import Settings
from memvault.main import create_app
from memvault.schema import build_schema
from tests.support.asgi import running

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    from tests.support.graphql import GraphQLClient

QUERY = "{ __typename }"
CREATE = 'mutation { createUser(input: {userId: "big"}) { userId } }'


async def test_a_repeated_document_is_parsed_and_validated_once() -> None:
    schema = build_schema(Settings())
    for _ in range(3):
        result = await schema.execute(QUERY)
        assert result.data == {"__typename": "Query"}
    assert schema.documents.parses == 1
    assert schema.documents.validations == 1


async def test_validation_errors_are_answered_every_time() -> None:
    schema = build_schema(Settings())
    for _ in range(2):
        result = await schema.execute("{ nosuchfield }")
        assert result.errors
        assert "nosuchfield" in result.errors[0].message


async def test_limits_come_from_settings() -> None:
    schema = build_schema(Settings(max_tokens=100, max_query_depth=2, max_aliases=2))
    tokens = await schema.execute("{ " + "__typename " * 120 + "}")
    assert tokens.errors
    assert "token" in tokens.errors[0].message
    aliases = await schema.execute("{ a: __typename b: __typename c: __typename }")
    assert aliases.errors
    assert "aliases" in aliases.errors[0].message
    deep = await schema.execute(
        '{ session(sessionId: "s") { user { sessions { nodes { sessionId } } } } }'
    )
    assert deep.errors
    assert "depth" in deep.errors[0].message


def padded(query: str, size: int, filler: str = "x") -> str:
    """``query`` and a comment, ``size`` UTF-8 bytes in all."""
    room = size - len(query.encode()) - len(" #")
    return f"{query} #" + filler * (room // len(filler.encode()))


@pytest.mark.parametrize(
    "query",
    [
        padded(CREATE, 65537),
        padded(CREATE, 4 * 1024 * 1024),
        padded(CREATE, 65540, "\u00e9"),  # 32,7xx characters, 2 bytes each
        CREATE.replace("big", "b" * 70_000),  # in a string
    ],
    ids=["one byte over", "4 MB", "over in bytes, not characters", "a long string"],
)
async def test_a_document_over_the_size_limit_is_refused_before_parsing(
    gql: GraphQLClient, db: AsyncDatabase[dict[str, Any]], query: str
) -> None:
    """MEMVAULT_MAX_QUERY_BYTES (64 KiB): the token limit let a huge comment or string through,
    and the document cache kept each (100 such documents of 4 MB held 803 MB of RSS)."""
    error = await gql.error(query)
    assert error["message"] == "Syntax Error: Document is larger than 65536 bytes. Parsing aborted."
    assert error["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}
    assert await db.users.count_documents({}) == 0


async def test_the_size_limit_holds_for_get_too(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """GET goes through Strawberry's view, not the direct path; the limit is the same."""
    app = create_app(dataclasses.replace(settings, max_query_bytes=2048), client=mongo_client)
    async with running(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://memvault.test") as http:
            for size, code in ((2048, None), (2049, "GRAPHQL_PARSE_FAILED")):
                response = await http.get("/graphql", params={"query": padded(QUERY, size)})
                assert response.status_code == 200
                answer = response.json()
                assert [e["extensions"]["code"] for e in answer.get("errors", [])] == (
                    [code] if code else []
                ), size


async def test_a_document_at_the_size_limit_runs(
    gql: GraphQLClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    assert await gql.ok(padded(CREATE, 65536)) == {"createUser": {"userId": "big"}}
    assert await db.users.count_documents({}) == 1


def test_the_size_limit_comes_from_settings() -> None:
    documents = build_schema(Settings(max_query_bytes=2048)).documents
    documents.parse(padded(QUERY, 2048))
    with pytest.raises(Exception, match="larger than 2048 bytes"):
        documents.parse(padded(QUERY, 2049))


@pytest.mark.parametrize(
    "query",
    [
        "{ " + "a " * 4990 + "}",
        "{ " + " ".join(f"field{n}" for n in range(4990)) + " }",
        '{ session(sessionId: "s") { sessionId memories(last: 10) { nodes { seq content } } } }',
        padded(QUERY, 65536),
    ],
    ids=["one-letter tokens", "long tokens", "a usual document", "a long comment"],
)
def test_a_documents_estimated_bytes_are_close_to_what_it_holds(query: str) -> None:
    """The cache's bound in bytes is an estimate: check it against what parsing keeps."""
    documents = build_schema(Settings()).documents
    documents.parse(QUERY)  # first-use allocations
    before = documents.weight
    gc.collect()
    tracemalloc.start()
    try:
        documents.parse(query)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] + sys.getsizeof(query)  # the key
    finally:
        tracemalloc.stop()
    estimate = documents.weight - before
    assert 0.5 * estimate < held < 1.25 * estimate, (held, estimate)


@pytest.mark.slow
def test_the_document_cache_is_bounded_in_bytes() -> None:
    """Documents of 5,000 tokens hold about 3 MB each parsed: 512 of them (the count bound)
    would hold 1.5 GB. Distinct ones now push the least recent out at 32 MiB (estimated)."""
    documents = build_schema(Settings()).documents
    queries = ["{ " + f"n{n} " + "a " * 4990 + "}" for n in range(40)]
    for query in queries:
        documents.parse(query)
    assert 20 * 1024 * 1024 < documents.weight <= 32 * 1024 * 1024
    parsed = documents.parses
    documents.parse(queries[-1])
    assert documents.parses == parsed  # the most recent are kept
    documents.parse(queries[0])
    assert documents.parses == parsed + 1  # the first went out
