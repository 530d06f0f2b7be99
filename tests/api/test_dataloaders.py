"""Nested fields are batched: database commands per query depend on depth, not on fan-out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import pytest_asyncio
from pymongo.asynchronous.database import AsyncDatabase

from memvault.config import Settings
from memvault.schema.loaders import LOADERS, DataLoaders
from tests.support.commands import CommandCounter, listened_app
from tests.support.graphql import GraphQLClient

NESTED = """{ users(first: 10) { nodes { userId sessions(first: 10) { nodes { sessionId memoryCount
    memories(last: 10) { nodes { content } } } } } } }"""
ADD = """mutation($input: AddMemoriesInput!) { addMemories(input: $input) { session { sessionId } } }"""
CREATE_USER = """mutation($id: String!) { createUser(input: {userId: $id}) { userId } }"""


@pytest_asyncio.fixture(loop_scope="session")
async def counted(
    mongo_uri: str, db: AsyncDatabase[dict[str, Any]], settings: Settings
) -> AsyncIterator[tuple[GraphQLClient, CommandCounter]]:
    counter = CommandCounter()
    async with listened_app(mongo_uri, settings, counter) as gql:
        await gql.ok("{ __typename }")
        yield gql, counter


async def seed(gql: GraphQLClient, *, users: int, sessions: int, memories: int, tag: str) -> None:
    for u in range(users):
        user_id = f"{tag}-u{u}"
        await gql.ok(CREATE_USER, {"id": user_id})
        for s in range(sessions):
            batch = [
                {"roleType": "USER", "content": f"{user_id}-s{s}-m{m}"} for m in range(memories)
            ]
            await gql.ok(
                ADD,
                {"input": {"sessionId": f"{user_id}-s{s}", "userId": user_id, "memories": batch}},
            )


async def commands_for(
    gql: GraphQLClient, counter: CommandCounter, query: str, variables: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    counter.commands.clear()
    data = await gql.ok(query, variables)
    return len(counter.commands), data


async def test_nested_query_command_count_is_flat(
    counted: tuple[GraphQLClient, CommandCounter],
) -> None:
    gql, counter = counted
    await seed(gql, users=1, sessions=2, memories=3, tag="a")
    small, data = await commands_for(gql, counter, NESTED)
    assert [n["sessionId"] for n in data["users"]["nodes"][0]["sessions"]["nodes"]] == [
        "a-u0-s0",
        "a-u0-s1",
    ]
    assert [m["content"] for m in data["users"]["nodes"][0]["sessions"]["nodes"][0]["memories"]["nodes"]] == [
        "a-u0-s0-m0", "a-u0-s0-m1", "a-u0-s0-m2",
    ]  # fmt: skip

    await seed(gql, users=9, sessions=10, memories=12, tag="b")
    large, data = await commands_for(gql, counter, NESTED)
    users = data["users"]["nodes"]
    assert len(users) == 10
    sessions = [s for u in users for s in u["sessions"]["nodes"]]
    assert len(sessions) == 2 + 9 * 10
    last = users[-1]["sessions"]["nodes"][-1]
    assert last["memoryCount"] == 12
    assert [m["content"] for m in last["memories"]["nodes"]] == [
        f"b-u8-s9-m{m}" for m in range(2, 12)
    ]
    print(f"\ndatabase commands for the nested query: 1 user {small}, 10 users {large}")
    assert small == large == 3


async def test_totals_and_page_flags_are_batched(
    counted: tuple[GraphQLClient, CommandCounter],
) -> None:
    gql, counter = counted
    await seed(gql, users=3, sessions=3, memories=4, tag="c")
    query = """{ users(first: 10) { totalCount nodes { sessions(first: 2) { totalCount
        pageInfo { hasNextPage hasPreviousPage endCursor } nodes { memories(last: 2) {
        totalCount pageInfo { hasPreviousPage hasNextPage } } } } } } }"""
    count_small, data = await commands_for(gql, counter, query)
    user = data["users"]["nodes"][0]
    assert data["users"]["totalCount"] == 3
    assert user["sessions"]["totalCount"] == 3
    assert user["sessions"]["pageInfo"]["hasNextPage"] is True
    assert user["sessions"]["pageInfo"]["hasPreviousPage"] is False
    memories = user["sessions"]["nodes"][0]["memories"]
    assert memories["totalCount"] == 4
    assert memories["pageInfo"] == {"hasPreviousPage": True, "hasNextPage": False}
    await seed(gql, users=5, sessions=4, memories=2, tag="d")
    count_large, _ = await commands_for(gql, counter, query)
    assert count_small == count_large


@pytest.mark.parametrize("depth_query", ['{ user(userId: "x") { userId } }'])
async def test_lookup_of_missing_user_is_one_command(
    counted: tuple[GraphQLClient, CommandCounter], depth_query: str
) -> None:
    gql, counter = counted
    count, data = await commands_for(gql, counter, depth_query)
    assert data == {"user": None}
    assert count == 1


WINDOW = """query($id: String!, $n: Int) { session(sessionId: $id) { sessionId memoryCount
    memories(last: $n) { totalCount pageInfo { hasPreviousPage } nodes { seq content session { sessionId } } } } }"""


async def test_recent_window_is_one_command(counted: tuple[GraphQLClient, CommandCounter]) -> None:
    gql, counter = counted
    await seed(gql, users=1, sessions=2, memories=30, tag="w")
    count, data = await commands_for(gql, counter, WINDOW, {"id": "w-u0-s0", "n": 5})
    session = data["session"]
    assert count == 1
    assert session["memoryCount"] == 30
    assert [m["seq"] for m in session["memories"]["nodes"]] == [26, 27, 28, 29, 30]
    assert [m["content"] for m in session["memories"]["nodes"]][-1] == "w-u0-s0-m29"
    assert {m["session"]["sessionId"] for m in session["memories"]["nodes"]} == {"w-u0-s0"}
    assert session["memories"]["totalCount"] == 30
    assert session["memories"]["pageInfo"]["hasPreviousPage"] is True
    literal = '{ session(sessionId: "w-u0-s0") { memories(last: 2) { nodes { seq } } } }'
    count, data = await commands_for(gql, counter, literal)
    assert count == 1
    assert data == {"session": {"memories": {"nodes": [{"seq": 29}, {"seq": 30}]}}}


async def test_recent_window_prefetch_matches_the_plain_path(
    counted: tuple[GraphQLClient, CommandCounter],
) -> None:
    gql, _ = counted
    await seed(gql, users=1, sessions=1, memories=12, tag="p")
    for n in (0, 1, 5, 12, 40):
        fast = await gql.ok(WINDOW, {"id": "p-u0-s0", "n": n})
        # a fragment turns the prefetch off: the same answer through the DataLoaders
        plain = await gql.ok(
            WINDOW.replace(
                "session(sessionId: $id) {",
                "session(sessionId: $id) { ...on Session { __typename }",
            ),
            {"id": "p-u0-s0", "n": n},
        )
        plain["session"].pop("__typename")
        assert fast == plain, n
    error = await gql.error(WINDOW, {"id": "p-u0-s0", "n": 1000})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await gql.ok(WINDOW, {"id": "missing", "n": 3}) == {"session": None}
    await gql.ok('mutation { deleteSession(sessionId: "p-u0-s0") { deleted } }')
    assert await gql.ok(WINDOW, {"id": "p-u0-s0", "n": 3}) == {"session": None}


async def test_forget_drops_what_every_built_loader_cached() -> None:
    assert set(LOADERS) == {
        "user",
        "session",
        "memory",
        "session_count_of_user",
        "sessions_of_user",
        "memories_of_session",
    }
    loaders = DataLoaders(db=cast("AsyncDatabase[dict[str, Any]]", None), project_id="p")
    assert loaders.__dict__.keys() == {"db", "project_id"}  # nothing built before its first use
    primed = LOADERS[::2]
    for name in primed:
        getattr(loaders, name).prime("key", "row")
    loaders.forget()
    assert {name for name in LOADERS if name in loaders.__dict__} == set(primed)
    for name in primed:
        assert getattr(loaders, name).cache_map.get("key") is None


LISTING_PAGE = """query($after: String) { sessions(first: 3, after: $after) { nodes { sessionId }
    edges { cursor node { id } } pageInfo { hasNextPage endCursor startCursor hasPreviousPage } } }"""


async def test_a_page_of_a_listing_is_one_read(
    counted: tuple[GraphQLClient, CommandCounter],
) -> None:
    """nodes, edges and each pageInfo flag ask for the page's rows at once: one read answers them
    all (it used to be one read each). From a cursor, whether rows precede it is one more."""
    gql, counter = counted
    await seed(gql, users=1, sessions=5, memories=1, tag="l")
    count, data = await commands_for(gql, counter, LISTING_PAGE)
    page = data["sessions"]
    assert count == 1
    assert counter.commands == ["find"]
    assert len(page["nodes"]) == len(page["edges"]) == 3
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["pageInfo"]["hasPreviousPage"] is False
    assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
    count, data = await commands_for(
        gql, counter, LISTING_PAGE, {"after": page["pageInfo"]["endCursor"]}
    )
    assert count == 2  # the page, and the one row before it
    assert data["sessions"]["pageInfo"]["hasPreviousPage"] is True
    users = """{ users(first: 1) { nodes { userId } pageInfo { hasNextPage endCursor } } }"""
    count, _ = await commands_for(gql, counter, users)
    assert count == 1
