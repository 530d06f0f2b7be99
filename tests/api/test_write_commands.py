"""addMemories' database commands: three for the common case (new memories for a live session),
counted, not timed; the other cases cost more only when they happen, and leave no gaps in seq."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest_asyncio

from memvault.config import Settings
from tests.support.commands import CommandCounter, listened_app
from tests.support.documents import assert_code
from tests.support.graphql import GraphQLClient, snapshot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pymongo.asynchronous.database import AsyncDatabase

    Db = AsyncDatabase[dict[str, Any]]

ADD = """mutation($input: AddMemoriesInput!) { addMemories(input: $input) {
  session { sessionId memoryCount } memories { uuid seq content } } }"""
CREATE_USER = """mutation($id: String!) { createUser(input: {userId: $id}) { userId } }"""
# the reservation of seq numbers (findAndModify), the insert, the count (findAndModify)
THREE = ["findAndModify", "insert", "findAndModify"]


@pytest_asyncio.fixture(loop_scope="session")
async def counted(
    mongo_uri: str, settings: Settings
) -> AsyncIterator[tuple[GraphQLClient, CommandCounter]]:
    counter = CommandCounter()
    async with listened_app(mongo_uri, settings, counter) as gql:
        await gql.ok("{ __typename }")
        yield gql, counter


def messages(*uuids: str) -> list[dict[str, Any]]:
    return [{"uuid": u, "roleType": "USER", "content": f"content of {u}"} for u in uuids]


async def add(
    gql: GraphQLClient,
    counter: CommandCounter,
    session_id: str,
    uuids: list[str],
    user_id: str | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """The commands of one addMemories call, and its answer."""
    given: dict[str, Any] = {"sessionId": session_id, "memories": messages(*uuids)}
    if user_id is not None:
        given["userId"] = user_id
    counter.commands.clear()
    data = await gql.ok(ADD, {"input": given})
    return list(counter.commands), data["addMemories"]


async def test_new_memories_for_a_live_session_take_three_commands(
    counted: tuple[GraphQLClient, CommandCounter], db: Db
) -> None:
    gql, counter = counted
    await add(gql, counter, "s1", ["m0"])

    one, payload = await add(gql, counter, "s1", ["m1"])
    ten, later = await add(gql, counter, "s1", [f"n{i}" for i in range(10)])

    assert one == THREE
    assert ten == THREE
    assert [(m["uuid"], m["seq"]) for m in payload["memories"]] == [("m1", 2)]
    assert [m["seq"] for m in later["memories"]] == list(range(3, 13))
    assert later["session"] == {"sessionId": "s1", "memoryCount": 12}
    stored = await db["memories"].find({"session_id": "s1"}).sort("seq", 1).to_list()
    assert [(d["uuid"], d["seq"]) for d in stored][:2] == [("m0", 1), ("m1", 2)]
    assert len(stored) == 12


async def test_the_sessions_own_user_given_again_takes_three_commands(
    counted: tuple[GraphQLClient, CommandCounter],
) -> None:
    gql, counter = counted
    await gql.ok(CREATE_USER, {"id": "u1"})
    await add(gql, counter, "s1", ["m0"], user_id="u1")

    commands, payload = await add(gql, counter, "s1", ["m1", "m2"], user_id="u1")

    assert commands == THREE
    assert [m["seq"] for m in payload["memories"]] == [2, 3]


async def test_a_retry_answers_the_stored_memories_and_leaves_no_gap(
    counted: tuple[GraphQLClient, CommandCounter], db: Db
) -> None:
    """A retry learns from the insert that its memories are stored, reads them, and gives back
    the numbers it took: the next call's memories follow with no gap (a gap would hold up live
    subscribers for a while)."""
    gql, counter = counted
    _, original = await add(gql, counter, "s1", ["m1", "m2"])
    before = await snapshot(db)

    commands, retried = await add(gql, counter, "s1", ["m1", "m2"])
    _, after = await add(gql, counter, "s1", ["m3"])

    assert retried["memories"] == original["memories"]
    assert retried["session"]["memoryCount"] == 2
    assert len(commands) == 4, commands  # reserve, insert (duplicate), read them, give back
    assert commands[:2] == ["findAndModify", "insert"]
    assert [m["seq"] for m in after["memories"]] == [3]
    assert (await snapshot(db))["memories"][:2] == before["memories"]


async def test_resending_stored_memories_with_new_ones_leaves_no_gap(
    counted: tuple[GraphQLClient, CommandCounter],
) -> None:
    gql, counter = counted
    await add(gql, counter, "s1", ["m1", "m2"])

    _, extended = await add(gql, counter, "s1", ["m1", "m2", "m3"])
    _, later = await add(gql, counter, "s1", ["m4"])

    assert [(m["uuid"], m["seq"]) for m in extended["memories"]] == [
        ("m1", 1), ("m2", 2), ("m3", 3)
    ]  # fmt: skip
    assert extended["session"]["memoryCount"] == 3
    assert [m["seq"] for m in later["memories"]] == [4]


async def test_a_uuid_of_another_session_changes_nothing_of_a_live_session(
    counted: tuple[GraphQLClient, CommandCounter], db: Db
) -> None:
    """The common path learns of the clash from the insert, after the memories before it were
    stored: they are removed again and the numbers given back, so nothing stays written."""
    gql, counter = counted
    await add(gql, counter, "other", ["taken"])
    await add(gql, counter, "s1", ["m1"])
    before = await snapshot(db)

    counter.commands.clear()
    body = await gql.raw(ADD, {"input": {"sessionId": "s1", "memories": messages("a", "taken")}})
    _, later = await add(gql, counter, "s1", ["m2"])

    assert_code(body["errors"][0], "CONFLICT")
    assert body["errors"][0]["extensions"]["field"] == "memories.uuid"
    assert [m["seq"] for m in later["memories"]] == [2]
    after = await snapshot(db)
    assert after["users"] == before["users"]
    assert [d for d in after["memories"] if d["uuid"] != "m2"] == before["memories"]


async def test_a_new_session_takes_the_careful_path(
    counted: tuple[GraphQLClient, CommandCounter],
) -> None:
    """Creating the session costs more, once per session: the uuids are checked before anything
    is written."""
    gql, counter = counted

    commands, payload = await add(gql, counter, "fresh", ["m1"])

    assert payload["session"] == {"sessionId": "fresh", "memoryCount": 1}
    assert commands[0] == "findAndModify"  # the reservation that found no live session
    assert len(commands) == 6, commands
