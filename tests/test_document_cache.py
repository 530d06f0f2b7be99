"""Each distinct document is parsed and validated once, and its limits still apply."""

from __future__ import annotations

from memvault.config import Settings
from memvault.schema import build_schema

QUERY = "{ __typename }"


async def test_a_repeated_document_is_parsed_and_validated_once() -> None:
    schema = build_schema(Settings())
    for _ in range(3):
        result = await schema.execute(QUERY)
        assert result.data == {"__typename": "Query"}
    assert schema.documents.parse.cache_info().misses == 1
    assert schema.documents.parse.cache_info().hits >= 2
    assert schema.documents._errors.cache_info().misses == 1


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
