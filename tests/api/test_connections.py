"""Relay connections: keyset cursors, exact page flags, limits, filters, stable walks, node()."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from memvault.db.queries import Window
from memvault.schema.connection import PageArgs, PageSource, plan_page
from tests.support.graphql import GraphQLClient

USERS_PAGE = """query($first: Int, $after: String, $last: Int, $before: String, $filter: UserFilter) {
  users(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount
    edges { cursor node { userId } }
    nodes { userId }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""
SESSIONS_PAGE = """query($first: Int, $after: String, $last: Int, $before: String, $filter: SessionFilter) {
  sessions(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount nodes { sessionId userId }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""
MEMORIES_PAGE = """query($id: String!, $first: Int, $after: String, $last: Int, $before: String) {
  session(sessionId: $id) { memories(first: $first, after: $after, last: $last, before: $before) {
    totalCount nodes { seq content }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }"""
CREATE_USER = """mutation($id: String!, $metadata: JSON) {
  createUser(input: {userId: $id, metadata: $metadata}) { userId createdAt } }"""
DELETE_USER = """mutation($id: String!) { deleteUser(userId: $id) { deleted } }"""
ADD = """mutation($session: String!, $user: String, $contents: [MemoryInput!]!) {
  addMemories(input: {sessionId: $session, userId: $user, memories: $contents}) { session { id } } }"""


async def make_users(gql: GraphQLClient, ids: list[str], **metadata: Any) -> list[str]:
    """Create users one after another (each gets a later createdAt than the one before)."""
    created = []
    for user_id in ids:
        data = await gql.ok(CREATE_USER, {"id": user_id, "metadata": metadata or None})
        created.append(data["createUser"]["createdAt"])
        await asyncio.sleep(0.003)
    return created


async def add(gql: GraphQLClient, session: str, count: int, user: str | None = None) -> None:
    contents = [{"roleType": "USER", "content": f"{session}-{i}"} for i in range(count)]
    await gql.ok(ADD, {"session": session, "user": user, "contents": contents})


def user_ids(page: dict[str, Any]) -> list[str]:
    return [node["userId"] for node in page["nodes"]]


async def test_forward_walk_has_exact_flags(gql: GraphQLClient) -> None:
    ids = [f"u{i:02d}" for i in range(7)]
    await make_users(gql, ids)
    seen: list[str] = []
    after = None
    flags = []
    while True:
        page = (await gql.ok(USERS_PAGE, {"first": 3, "after": after}))["users"]
        assert page["totalCount"] == 7
        assert [e["node"]["userId"] for e in page["edges"]] == user_ids(page)
        assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        seen += user_ids(page)
        flags.append((page["pageInfo"]["hasPreviousPage"], page["pageInfo"]["hasNextPage"]))
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ids
    assert flags == [(False, True), (True, True), (True, False)]


async def test_backward_walk_has_exact_flags(gql: GraphQLClient) -> None:
    ids = [f"u{i:02d}" for i in range(7)]
    await make_users(gql, ids)
    pages: list[list[str]] = []
    flags = []
    before = None
    while True:
        page = (await gql.ok(USERS_PAGE, {"last": 3, "before": before}))["users"]
        pages.append(user_ids(page))
        flags.append((page["pageInfo"]["hasPreviousPage"], page["pageInfo"]["hasNextPage"]))
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert pages == [["u04", "u05", "u06"], ["u01", "u02", "u03"], ["u00"]]
    assert flags == [(True, False), (True, True), (False, True)]


async def test_after_and_before_together(gql: GraphQLClient) -> None:
    await make_users(gql, [f"u{i}" for i in range(6)])
    edges = (await gql.ok(USERS_PAGE, {"first": 6}))["users"]["edges"]
    page = await gql.ok(
        USERS_PAGE, {"first": 10, "after": edges[0]["cursor"], "before": edges[4]["cursor"]}
    )
    assert user_ids(page["users"]) == ["u1", "u2", "u3"]
    assert page["users"]["pageInfo"]["hasPreviousPage"] is True
    page = await gql.ok(
        USERS_PAGE, {"last": 2, "after": edges[0]["cursor"], "before": edges[4]["cursor"]}
    )
    assert user_ids(page["users"]) == ["u2", "u3"]
    assert page["users"]["pageInfo"]["hasNextPage"] is True
    assert page["users"]["pageInfo"]["hasPreviousPage"] is True


async def test_default_page_size_is_20_and_empty_page(gql: GraphQLClient) -> None:
    await make_users(gql, [f"u{i:02d}" for i in range(23)])
    page = (await gql.ok(USERS_PAGE, {}))["users"]
    assert len(page["nodes"]) == 20
    assert page["pageInfo"]["hasNextPage"] is True
    page = (await gql.ok(USERS_PAGE, {"first": 0}))["users"]
    assert page["nodes"] == []
    assert page["pageInfo"]["startCursor"] is None
    assert page["totalCount"] == 23


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"first": 101}, "first"),
        ({"last": 101}, "last"),
        ({"first": -1}, "first"),
        ({"first": 2, "last": 2}, "first"),
        ({"after": "not a cursor"}, "after"),
        ({"before": "bXYxOnVzZXJz"}, "before"),
        ({"after": "bXYxOm1lbW9yaWVzOm46Mg"}, "after"),  # a memories cursor on users
    ],
)
async def test_bad_page_arguments(
    gql: GraphQLClient, variables: dict[str, Any], field: str
) -> None:
    error = await gql.error(USERS_PAGE, variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert field in error["message"]


async def test_walk_is_stable_while_rows_come_and_go(gql: GraphQLClient) -> None:
    """No row twice, and no skipped row among those live for the whole walk."""
    ids = [f"u{i:02d}" for i in range(12)]
    await make_users(gql, ids)
    seen: list[str] = []
    after = None
    step = 0
    while True:
        page = (await gql.ok(USERS_PAGE, {"first": 4, "after": after}))["users"]
        seen += user_ids(page)
        # between pages: delete one row ahead and one behind, add a new one
        step += 1
        await gql.ok(DELETE_USER, {"id": f"u{step * 4 + 1:02d}"}) if step * 4 + 1 < 12 else None
        await gql.ok(DELETE_USER, {"id": f"u{step - 1:02d}"})
        await make_users(gql, [f"new{step}"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen))
    deleted_ahead = {f"u{s * 4 + 1:02d}" for s in range(1, 4)}
    survivors = [i for i in ids if i not in deleted_ahead]
    assert [i for i in seen if i in survivors] == survivors


async def test_created_filters_and_metadata_filter(gql: GraphQLClient) -> None:
    times = await make_users(gql, ["a", "b", "c", "d"])
    await make_users(gql, ["e", "f"], team="red", level=3)
    page = await gql.ok(
        USERS_PAGE, {"filter": {"createdAfter": times[0], "createdBefore": times[3]}}
    )
    assert user_ids(page["users"]) == ["b", "c"]
    assert page["users"]["totalCount"] == 2
    page = await gql.ok(USERS_PAGE, {"filter": {"metadata": {"team": "red", "level": 3}}})
    assert user_ids(page["users"]) == ["e", "f"]
    assert page["users"]["totalCount"] == 2
    page = await gql.ok(USERS_PAGE, {"filter": {"metadata": {"level": "3"}}})
    assert user_ids(page["users"]) == []


async def test_session_filter_by_user_and_paging(gql: GraphQLClient) -> None:
    await make_users(gql, ["ann", "bob"])
    for i in range(5):
        await add(gql, f"ann-{i}", 1, user="ann")
    await add(gql, "bob-0", 1, user="bob")
    await add(gql, "nobody", 1)
    page = (await gql.ok(SESSIONS_PAGE, {"first": 3, "filter": {"userId": "ann"}}))["sessions"]
    assert [n["sessionId"] for n in page["nodes"]] == ["ann-0", "ann-1", "ann-2"]
    assert page["totalCount"] == 5
    rest = await gql.ok(
        SESSIONS_PAGE,
        {"first": 3, "after": page["pageInfo"]["endCursor"], "filter": {"userId": "ann"}},
    )
    assert [n["sessionId"] for n in rest["sessions"]["nodes"]] == ["ann-3", "ann-4"]
    everything = (await gql.ok(SESSIONS_PAGE, {}))["sessions"]
    assert everything["totalCount"] == 7
    assert everything["nodes"][-1] == {"sessionId": "nobody", "userId": None}
    nested = await gql.ok(
        """{ user(userId: "ann") { sessions(last: 2) { nodes { sessionId }
            pageInfo { hasPreviousPage hasNextPage } totalCount } } }"""
    )
    assert nested["user"]["sessions"] == {
        "nodes": [{"sessionId": "ann-3"}, {"sessionId": "ann-4"}],
        "pageInfo": {"hasPreviousPage": True, "hasNextPage": False},
        "totalCount": 5,
    }


async def test_memories_recent_window_and_walk(gql: GraphQLClient) -> None:
    await add(gql, "chat", 25)
    recent = (await gql.ok(MEMORIES_PAGE, {"id": "chat", "last": 10}))["session"]["memories"]
    assert [n["content"] for n in recent["nodes"]] == [f"chat-{i}" for i in range(15, 25)]
    assert recent["pageInfo"]["hasPreviousPage"] is True
    assert recent["pageInfo"]["hasNextPage"] is False
    assert recent["totalCount"] == 25
    older = await gql.ok(
        MEMORIES_PAGE, {"id": "chat", "last": 10, "before": recent["pageInfo"]["startCursor"]}
    )
    assert [n["seq"] for n in older["session"]["memories"]["nodes"]] == list(range(6, 16))
    forward: list[int] = []
    after = None
    while True:
        page = (await gql.ok(MEMORIES_PAGE, {"id": "chat", "first": 7, "after": after}))["session"][
            "memories"
        ]
        forward += [n["seq"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert forward == list(range(1, 26))


async def test_node_lookup(gql: GraphQLClient, db: AsyncDatabase[dict[str, Any]]) -> None:
    await make_users(gql, ["ann"])
    await add(gql, "s1", 2, user="ann")
    data = await gql.ok(
        """{ user(userId: "ann") { id } session(sessionId: "s1") { id
             memories { nodes { id uuid } } } }"""
    )
    memory = data["session"]["memories"]["nodes"][0]
    nodes = await gql.ok(
        """query($u: ID!, $s: ID!, $m: ID!) {
             u: node(id: $u) { __typename ... on User { userId } }
             s: node(id: $s) { __typename ... on Session { sessionId } }
             m: node(id: $m) { __typename id ... on Memory { uuid } } }""",
        {"u": data["user"]["id"], "s": data["session"]["id"], "m": memory["id"]},
    )
    assert nodes == {
        "u": {"__typename": "User", "userId": "ann"},
        "s": {"__typename": "Session", "sessionId": "s1"},
        "m": {"__typename": "Memory", "id": memory["id"], "uuid": memory["uuid"]},
    }
    await gql.ok('mutation { deleteSession(sessionId: "s1") { deleted } }')
    gone = await gql.ok("query($s: ID!) { node(id: $s) { id } }", {"s": data["session"]["id"]})
    assert gone == {"node": None}
    error = await gql.error('{ node(id: "garbage!") { id } }')
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


def forged_cursor(kind: str, key: str) -> str:
    """A cursor in our format (it decodes), with a key as long as the client likes."""
    return base64.urlsafe_b64encode(f"mv1:{kind}:s:{key}".encode()).decode().rstrip("=")


USER_SESSIONS = """query($after: String) {
  user(userId: "ann") { sessions(first: 1, after: $after) { nodes { sessionId } } } }"""
HUGE = "k" * 1_000_000


@pytest.mark.parametrize(
    ("query", "variables", "argument"),
    [
        (USERS_PAGE, {"after": forged_cursor("users", HUGE)}, "after"),
        (USERS_PAGE, {"before": forged_cursor("users", HUGE)}, "before"),
        (SESSIONS_PAGE, {"after": forged_cursor("sessions", HUGE)}, "after"),
        (USER_SESSIONS, {"after": forged_cursor("sessions", HUGE)}, "after"),
        (MEMORIES_PAGE, {"id": "s1", "before": "A" * 1_000_000}, "before"),
    ],
)
async def test_overlong_cursors_are_refused(
    gql: GraphQLClient, query: str, variables: dict[str, Any], argument: str
) -> None:
    """A cursor longer than any we hand out is BAD_USER_INPUT before it reaches the page plan
    cache (which kept each whole: 100 forged 4 MB cursors held 1.1 GB of the server's RSS)."""
    await make_users(gql, ["ann"])
    await add(gql, "s1", 2, user="ann")
    error = await gql.error(query, variables)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": argument}
    assert error["message"].startswith(f"{argument}: not a valid cursor (longer than ")


async def test_the_longest_cursor_we_make_is_accepted(gql: GraphQLClient) -> None:
    """Ids may be 256 characters of 4 UTF-8 bytes each: their cursors stay within the bound."""
    longest = "\U0001f600" * 256
    await add(gql, longest, 1)
    await asyncio.sleep(0.003)  # a later creation time: "later" sorts after it
    await add(gql, "later", 1)
    first = await gql.ok(SESSIONS_PAGE, {"first": 1})
    cursor = first["sessions"]["pageInfo"]["endCursor"]
    assert first["sessions"]["nodes"][0]["sessionId"] == longest
    assert len(cursor) > 1024
    rest = await gql.ok(SESSIONS_PAGE, {"first": 1, "after": cursor})
    assert [node["sessionId"] for node in rest["sessions"]["nodes"]] == ["later"]
    back = await gql.ok(
        SESSIONS_PAGE, {"last": 1, "before": rest["sessions"]["pageInfo"]["endCursor"]}
    )
    assert [node["sessionId"] for node in back["sessions"]["nodes"]] == [longest]


async def test_a_page_read_by_many_fields_at_once_is_read_once() -> None:
    """nodes, edges and pageInfo ask for the page's rows concurrently: one read serves them all;
    if that read fails, its caller gets the error and a caller still waiting reads again."""
    reads: list[Window] = []
    failures = [RuntimeError("the database went away")]

    async def fetch(window: Window) -> list[dict[str, Any]]:
        reads.append(window)
        await asyncio.sleep(0)
        if failures:
            raise failures.pop()
        return [{"order_key": f"k{n}"} for n in range(3)]

    plan = plan_page(PageArgs(first=2), kind="sessions", base=Window(), default_size=20)
    source = PageSource(plan, "sessions", fetch, 0, dict)
    first, second, third = await asyncio.gather(
        source.rows(), source.rows(), source.rows(), return_exceptions=True
    )
    assert isinstance(first, RuntimeError)
    assert second == third == [{"order_key": "k0"}, {"order_key": "k1"}]
    assert len(reads) == 2
    assert await source.has_next_page() is True
    assert await source.nodes() == second
    assert len(reads) == 2
