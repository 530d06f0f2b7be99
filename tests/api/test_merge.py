"""Metadata merge: RFC 7396 JSON Merge Patch, as a function and through every updating mutation."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from memvault.db.merge import merge_patch
from tests.support.documents import (
    add,
    create_session,
    create_user,
    get_memory,
    get_session,
    get_user,
    stored_one,
    update_memory,
    update_session,
    update_user,
    upsert_session,
    upsert_user,
)
from tests.support.graphql import GraphQLClient
from tests.support.merge_oracle import RFC_7396_APPENDIX_A, RFC_7396_SECTION_3, rfc7396

Db = AsyncDatabase[dict[str, Any]]


@pytest.mark.parametrize(
    ("target", "patch", "expected"), [*RFC_7396_APPENDIX_A, RFC_7396_SECTION_3]
)
def test_merge_patch_rfc_7396_examples(target: Any, patch: Any, expected: Any) -> None:
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)

    assert merge_patch(target, patch) == expected
    # neither argument is modified
    assert target == target_before
    assert patch == patch_before


@pytest.mark.parametrize(
    ("target", "patch", "expected"), [*RFC_7396_APPENDIX_A, RFC_7396_SECTION_3]
)
def test_the_oracle_meets_the_rfc_7396_examples(target: Any, patch: Any, expected: Any) -> None:
    """The tests' own RFC 7396 (``tests.support.merge_oracle``) is checked against the RFC too."""
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)

    assert rfc7396(target, patch) == expected
    assert target == target_before
    assert patch == patch_before


# --- through GraphQL, for every kind of thing that has metadata ---------------------------------


@dataclass(frozen=True)
class Kind:
    name: str
    create: Callable[[GraphQLClient, dict[str, Any]], Awaitable[Any]]
    merge: Callable[[GraphQLClient, dict[str, Any]], Awaitable[dict[str, Any]]]
    read: Callable[[GraphQLClient], Awaitable[dict[str, Any] | None]]
    collection: str
    key: dict[str, str]


async def _create_memory(gql: GraphQLClient, metadata: dict[str, Any]) -> None:
    await add(gql, "s1", "text", uuids=["m1"], metadata=metadata)


KINDS = [
    Kind(
        "user",
        lambda gql, md: create_user(gql, "u1", metadata=md),
        lambda gql, patch: update_user(gql, "u1", metadata=patch),
        lambda gql: get_user(gql, "u1"),
        "users",
        {"user_id": "u1"},
    ),
    Kind(
        "user-upsert",
        lambda gql, md: create_user(gql, "u1", metadata=md),
        lambda gql, patch: upsert_user(gql, "u1", metadata=patch),
        lambda gql: get_user(gql, "u1"),
        "users",
        {"user_id": "u1"},
    ),
    Kind(
        "session",
        lambda gql, md: create_session(gql, "s1", metadata=md),
        lambda gql, patch: update_session(gql, "s1", patch),
        lambda gql: get_session(gql, "s1"),
        "sessions",
        {"session_id": "s1"},
    ),
    Kind(
        "session-upsert",
        lambda gql, md: create_session(gql, "s1", metadata=md),
        lambda gql, patch: upsert_session(gql, "s1", metadata=patch),
        lambda gql: get_session(gql, "s1"),
        "sessions",
        {"session_id": "s1"},
    ),
    Kind(
        "memory",
        _create_memory,
        lambda gql, patch: update_memory(gql, "m1", metadata=patch),
        lambda gql: get_memory(gql, "m1"),
        "memories",
        {"uuid": "m1"},
    ),
]

# (original, patch, result): each rule of the merge, as stored and as served.
GRAPHQL_CASES = {
    "deep merge": (
        {"a": {"b": {"c": 1, "d": 2}, "x": "keep"}, "top": 0},
        {"a": {"b": {"d": 3, "e": 4}}},
        {"a": {"b": {"c": 1, "d": 3, "e": 4}, "x": "keep"}, "top": 0},
    ),
    "null removes a key": (
        {"a": 1, "b": {"c": 1, "d": 2}, "e": [1]},
        {"a": None, "b": {"d": None}, "missing": None},
        {"b": {"c": 1}, "e": [1]},
    ),
    "arrays replace": (
        {"list": [1, 2, 3], "objs": [{"a": 1}]},
        {"list": [4], "objs": [{"b": 2}]},
        {"list": [4], "objs": [{"b": 2}]},
    ),
    "scalar replaced by object": (
        {"a": 1, "b": "text"},
        {"a": {"x": {"y": 1}}, "b": {"c": True}},
        {"a": {"x": {"y": 1}}, "b": {"c": True}},
    ),
    "object replaced by scalar": (
        {"a": {"x": {"y": 1}}, "b": {"c": 1}},
        {"a": 1, "b": "text"},
        {"a": 1, "b": "text"},
    ),
    "empty patch changes nothing": (
        {"a": {"b": [1, {"c": None}]}},
        {},
        {"a": {"b": [1, {"c": None}]}},
    ),
}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize(
    ("original", "patch", "expected"), GRAPHQL_CASES.values(), ids=list(GRAPHQL_CASES)
)
async def test_metadata_merge_through_graphql(
    gql: GraphQLClient, db: Db, kind: Kind, original: Any, patch: Any, expected: Any
) -> None:
    await kind.create(gql, original)

    returned = await kind.merge(gql, patch)

    assert returned["metadata"] == expected
    doc = await stored_one(db, kind.collection, **kind.key)
    assert doc["metadata"] == expected
    read = await kind.read(gql)
    assert read is not None
    assert read["metadata"] == expected


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
async def test_scalar_to_object_and_back(gql: GraphQLClient, db: Db, kind: Kind) -> None:
    await kind.create(gql, {"a": 1})

    assert (await kind.merge(gql, {"a": {"b": {"c": 1}}}))["metadata"] == {"a": {"b": {"c": 1}}}
    assert (await stored_one(db, kind.collection, **kind.key))["metadata"] == {"a": {"b": {"c": 1}}}
    assert (await kind.merge(gql, {"a": "x"}))["metadata"] == {"a": "x"}
    assert (await stored_one(db, kind.collection, **kind.key))["metadata"] == {"a": "x"}
    assert (await kind.merge(gql, {"a": {"d": 2}}))["metadata"] == {"a": {"d": 2}}
    assert (await stored_one(db, kind.collection, **kind.key))["metadata"] == {"a": {"d": 2}}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
async def test_booleans_stay_booleans_after_merge(gql: GraphQLClient, db: Db, kind: Kind) -> None:
    await kind.create(gql, {"flag": True, "off": False, "n": {"deep": True}, "list": [True, False]})

    returned = await kind.merge(gql, {"other": 1, "n": {"added": False}, "new": True})

    expected = {
        "flag": True,
        "off": False,
        "n": {"deep": True, "added": False},
        "list": [True, False],
        "other": 1,
        "new": True,
    }
    assert returned["metadata"] == expected
    doc = await stored_one(db, kind.collection, **kind.key)
    assert doc["metadata"] == expected
    for value in (
        doc["metadata"]["flag"],
        doc["metadata"]["off"],
        doc["metadata"]["n"]["deep"],
        doc["metadata"]["n"]["added"],
        doc["metadata"]["new"],
        *doc["metadata"]["list"],
    ):
        assert type(value) is bool, doc["metadata"]
    read = await kind.read(gql)
    assert read is not None
    flags = read["metadata"]
    assert [type(flags[k]) for k in ("flag", "off", "new")] == [bool, bool, bool]
    assert type(flags["other"]) is int


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
async def test_concurrent_merges_of_different_keys_all_survive(
    gql: GraphQLClient, db: Db, kind: Kind
) -> None:
    await kind.create(gql, {"base": {"keep": True}})
    writers = 30

    results = await asyncio.gather(
        *(kind.merge(gql, {f"k{i}": i, "base": {f"b{i}": i}}) for i in range(writers))
    )

    expected = {
        **{f"k{i}": i for i in range(writers)},
        "base": {"keep": True, **{f"b{i}": i for i in range(writers)}},
    }
    for i, result in enumerate(results):
        assert result["metadata"][f"k{i}"] == i  # each writer sees its own change
    assert (await stored_one(db, kind.collection, **kind.key))["metadata"] == expected
    read = await kind.read(gql)
    assert read is not None
    assert read["metadata"] == expected
