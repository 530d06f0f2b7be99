"""searchMemories: ranking, filters, keyset pages while memories are added, deletion and
restore, projects kept apart, and refused inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.api.test_security import bearer, make_key
from tests.support.documents import add, create_user, delete_memory, delete_session, restore_session
from tests.support.graphql import GraphQLClient
from tests.support.readme import fenced, section

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    Db = AsyncDatabase[dict[str, Any]]

SEARCH = """query($q: String!, $filter: MemorySearchFilter, $first: Int, $after: String) {
  searchMemories(query: $q, filter: $filter, first: $first, after: $after) {
    edges { cursor score node { uuid content } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def search(gql: GraphQLClient, q: str, **variables: Any) -> list[str]:
    data = await gql.ok(SEARCH, {"q": q, **variables})
    return [edge["node"]["uuid"] for edge in data["searchMemories"]["edges"]]


async def corpus(gql: GraphQLClient) -> None:
    """Known answers: m1-m5 in s1 (user u1), m6-m7 in s2 (user u2), added in this order."""
    for user in ("u1", "u2"):
        await create_user(gql, user)
    await add(
        gql,
        "s1",
        "My address is 12 Rue de l'Église, Paris",
        "Thanks, I noted your address",
        "The weather in Paris is nice",
        "address address address: the delivery address changed",
        "Remember the café near the office",
        user_id="u1",
        uuids=["m1", "m2", "m3", "m4", "m5"],
    )
    await add(
        gql,
        "s2",
        "Ship it to my home address last week",
        "ADDRESS CONFIRMED",
        user_id="u2",
        uuids=["m6", "m7"],
        role="agent",
        metadata={"lang": "en", "vip": True},
    )


async def test_relevance_order_then_recency(gql: GraphQLClient) -> None:
    await corpus(gql)
    data = await gql.ok(SEARCH, {"q": "address"})
    edges = data["searchMemories"]["edges"]
    uuids = [edge["node"]["uuid"] for edge in edges]
    assert uuids[0] == "m4"  # four occurrences
    assert set(uuids) == {"m1", "m2", "m4", "m6", "m7"}
    scores = [edge["score"] for edge in edges]
    assert scores == sorted(scores, reverse=True)
    assert await search(gql, "paris address") == ["m1"]  # every word must match


async def test_phrases_exclusions_and_folding(gql: GraphQLClient) -> None:
    await corpus(gql)
    assert await search(gql, '"home address"') == ["m6"]
    assert await search(gql, '"address home"') == []
    assert set(await search(gql, "address -paris -home")) == {"m2", "m4", "m7"}
    assert await search(gql, "EGLISE") == ["m1"]
    assert await search(gql, "Cafe") == ["m5"]
    assert await search(gql, "café -office") == []


async def test_each_filter(gql: GraphQLClient) -> None:
    await corpus(gql)
    assert set(await search(gql, "address", filter={"sessionId": "s2"})) == {"m6", "m7"}
    assert set(await search(gql, "address", filter={"userId": "u1"})) == {"m1", "m2", "m4"}
    assert await search(gql, "address", filter={"userId": "nobody"}) == []
    assert set(await search(gql, "address", filter={"roleType": "USER"})) == {
        "m1",
        "m2",
        "m4",
        "m6",
        "m7",
    }
    assert await search(gql, "address", filter={"roleType": "ASSISTANT"}) == []
    assert set(await search(gql, "address", filter={"role": "agent"})) == {"m6", "m7"}
    assert set(await search(gql, "address", filter={"metadata": {"vip": True}})) == {"m6", "m7"}
    assert await search(gql, "address", filter={"metadata": {"vip": 1}}) == []
    assert await search(gql, "address", filter={"metadata": {"lang": "fr"}}) == []
    future = "2999-01-01T00:00:00.000Z"
    assert await search(gql, "address", filter={"createdAfter": future}) == []
    assert len(await search(gql, "address", filter={"createdBefore": future})) == 5


async def test_scoped_on_user_and_session(gql: GraphQLClient) -> None:
    await corpus(gql)
    query = """query { user(userId: "u2") { searchMemories(query: "address") {
      nodes { uuid } } }
      session(sessionId: "s1") { searchMemories(query: "address", filter: {userId: "u2"}) {
      nodes { uuid } } } }"""
    data = await gql.ok(query)
    assert {n["uuid"] for n in data["user"]["searchMemories"]["nodes"]} == {"m6", "m7"}
    assert data["session"]["searchMemories"]["nodes"] == []  # scope and filter disagree


async def test_paging_while_memories_are_added_neither_repeats_nor_skips(
    gql: GraphQLClient,
) -> None:
    await add(
        gql, "s1", *[f"needle number {i}" for i in range(12)], uuids=[f"a{i}" for i in range(12)]
    )
    seen: list[str] = []
    after = None
    for turn in range(10):
        data = (await gql.ok(SEARCH, {"q": "needle", "first": 5, "after": after}))["searchMemories"]
        seen += [edge["node"]["uuid"] for edge in data["edges"]]
        await add(gql, "s1", f"needle added {turn}", uuids=[f"b{turn}"])
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen))
    assert {f"a{i}" for i in range(12)} <= set(seen)


async def test_deleted_memories_and_sessions_are_invisible_until_restored(
    gql: GraphQLClient,
) -> None:
    await corpus(gql)
    await delete_memory(gql, "m4")
    assert "m4" not in await search(gql, "address")
    await delete_session(gql, "s2")
    assert set(await search(gql, "address")) == {"m1", "m2"}
    await restore_session(gql, "s2")
    assert set(await search(gql, "address")) == {"m1", "m2", "m6", "m7"}


async def test_other_projects_never_appear(gql: GraphQLClient, db: Db) -> None:
    acme, other = await make_key(db, "acme", "write"), await make_key(db, "other", "write")
    mutation = """mutation($c: String!) { addMemories(input: {sessionId: "s1",
      memories: [{roleType: USER, content: $c}]}) { session { sessionId } } }"""
    await gql.ok(mutation, {"c": "secret plan alpha"}, headers=bearer(acme))
    await gql.ok(mutation, {"c": "secret plan beta"}, headers=bearer(other))
    data = await gql.ok(SEARCH, {"q": "secret"}, headers=bearer(acme))
    contents = [e["node"]["content"] for e in data["searchMemories"]["edges"]]
    assert contents == ["secret plan alpha"]


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"q": "x" * 10_000}, "query"),
        ({"q": " ".join(f"w{i}" for i in range(17))}, "query"),
        ({"q": "y" * 65}, "query"),
        ({"q": ".* ^$ (|)"}, "query"),
        ({"q": "-only -excluded"}, "query"),
        ({"q": ""}, "query"),
        ({"q": "a", "first": 101}, "first"),
        ({"q": "a", "first": -1}, "first"),
        ({"q": "a", "after": "not-a-cursor"}, "after"),
        ({"q": "a", "filter": {"metadata": {"k": {"$ne": 1}}}}, "filter.metadata"),
        ({"q": "a", "filter": {"metadata": {"$where": "1"}}}, "filter.metadata"),
        ({"q": "a", "filter": {"sessionId": ""}}, "filter.sessionId"),
    ],
)
async def test_hostile_inputs_are_bad_user_input(
    gql: GraphQLClient, variables: dict[str, Any], field: str
) -> None:
    await corpus(gql)
    error = await gql.error(SEARCH, variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"].get("field", field) == field


async def test_regex_characters_are_separators_not_patterns(gql: GraphQLClient) -> None:
    await corpus(gql)
    assert set(await search(gql, "address.*")) == {"m1", "m2", "m4", "m6", "m7"}
    assert await search(gql, "[a-z]+") == []


async def test_the_readme_example(gql: GraphQLClient) -> None:
    (example,) = fenced("graphql search", section("Search"))
    await create_user(gql, "ada")
    await add(
        gql,
        "ada-1",
        "My address changed last week",
        "The office address is old",
        "An address for last week's invoice",
        user_id="ada",
        uuids=["r1", "r2", "r3"],
    )
    await add(gql, "other", "my address changed last week", uuids=["r4"])
    data = (await gql.ok(example))["searchMemories"]
    assert {edge["node"]["uuid"] for edge in data["edges"]} == {"r1", "r3"}
    assert all(e["node"]["session"] == {"sessionId": "ada-1"} for e in data["edges"])
    assert data["pageInfo"]["hasNextPage"] is False


async def test_cost_counts_the_page_asked_for(gql: GraphQLClient) -> None:
    """Nested searches cost their page size (100 users x 4 searches of 5: 6,100), not the
    largest page (120,100: over the limit)."""
    search = 'searchMemories(query: "a", first: 5) { edges { node { session { sessionId } } } }'
    aliases = " ".join(f"s{i}: {search}" for i in range(4))
    query = f"{{ users(first: 100) {{ nodes {{ {aliases} }} }} }}"
    assert (await gql.ok(query))["users"]["nodes"] == []
    error = await gql.error(query.replace("first: 5", "first: 100"))
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
