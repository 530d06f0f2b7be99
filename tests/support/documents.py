"""GraphQL documents and small factories: create, read and check users, sessions and memories
through the API, and read what is stored."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from tests.support.graphql import GraphQLClient

PROJECT = "default"  # the project of anonymous requests in open mode

USER = "id userId email firstName lastName metadata createdAt updatedAt"
SESSION = "id sessionId userId metadata createdAt updatedAt memoryCount"
MEMORY = (
    "id uuid seq role roleType content metadata tokenCount createdAt updatedAt"
    " session { sessionId }"
)

CREATE_USER = f"""mutation($input: CreateUserInput!) {{ createUser(input: $input) {{ {USER} }} }}"""
UPSERT_USER = f"""mutation($input: UpsertUserInput!) {{ upsertUser(input: $input) {{ {USER} }} }}"""
UPDATE_USER = f"""mutation($input: UpdateUserInput!) {{ updateUser(input: $input) {{ {USER} }} }}"""
DELETE_USER = """mutation($id: String!) { deleteUser(userId: $id) { deleted } }"""
FORGET_USER = """mutation($id: String!) { forgetUser(userId: $id) { deleted } }"""

CREATE_SESSION = (
    f"""mutation($input: CreateSessionInput!) {{ createSession(input: $input) {{ {SESSION} }} }}"""
)
UPSERT_SESSION = (
    f"""mutation($input: UpsertSessionInput!) {{ upsertSession(input: $input) {{ {SESSION} }} }}"""
)
UPDATE_SESSION = (
    f"""mutation($input: UpdateSessionInput!) {{ updateSession(input: $input) {{ {SESSION} }} }}"""
)
DELETE_SESSION = """mutation($id: String!) { deleteSession(sessionId: $id) { deleted } }"""
RESTORE_SESSION = f"""mutation($id: String!) {{ restoreSession(sessionId: $id) {{ {SESSION} }} }}"""

ADD_MEMORIES = f"""mutation($input: AddMemoriesInput!) {{
  addMemories(input: $input) {{ session {{ {SESSION} }} memories {{ {MEMORY} }} }}
}}"""
# addMemories answering only what racing calls compare
ADD_MEMORIES_BRIEF = """mutation($input: AddMemoriesInput!) {
  addMemories(input: $input) {
    session { sessionId memoryCount }
    memories { uuid seq content }
  }
}"""
UPDATE_MEMORY = (
    f"""mutation($input: UpdateMemoryInput!) {{ updateMemory(input: $input) {{ {MEMORY} }} }}"""
)
DELETE_MEMORY = """mutation($uuid: String!) { deleteMemory(uuid: $uuid) { deleted } }"""

GET_USER = f"""query($id: String!) {{ user(userId: $id) {{ {USER}
  sessions {{ totalCount nodes {{ sessionId }} }} }} }}"""
GET_SESSION = f"""query($id: String!) {{ session(sessionId: $id) {{ {SESSION}
  memories(first: 100) {{ totalCount nodes {{ uuid seq content }} }} }} }}"""
GET_MEMORY = f"""query($uuid: String!) {{ memory(uuid: $uuid) {{ {MEMORY} }} }}"""
GET_NODE = """query($id: ID!) { node(id: $id) { id __typename } }"""
LIST_USERS = """{ users(first: 100) { totalCount nodes { userId } } }"""
LIST_SESSIONS = """query($user: String) {
  sessions(first: 100, filter: {userId: $user}) { totalCount nodes { sessionId } }
}"""


def _input(**fields: Any) -> dict[str, Any]:
    return {"input": fields}


async def create_user(gql: GraphQLClient, user_id: str, **fields: Any) -> dict[str, Any]:
    data = await gql.ok(CREATE_USER, _input(userId=user_id, **fields))
    return data["createUser"]  # type: ignore[no-any-return]


async def upsert_user(gql: GraphQLClient, user_id: str, **fields: Any) -> dict[str, Any]:
    data = await gql.ok(UPSERT_USER, _input(userId=user_id, **fields))
    return data["upsertUser"]  # type: ignore[no-any-return]


async def update_user(gql: GraphQLClient, user_id: str, **fields: Any) -> dict[str, Any]:
    data = await gql.ok(UPDATE_USER, _input(userId=user_id, **fields))
    return data["updateUser"]  # type: ignore[no-any-return]


async def delete_user(gql: GraphQLClient, user_id: str) -> None:
    assert await gql.ok(DELETE_USER, {"id": user_id}) == {"deleteUser": {"deleted": True}}


async def create_session(gql: GraphQLClient, session_id: str, **fields: Any) -> dict[str, Any]:
    data = await gql.ok(CREATE_SESSION, _input(sessionId=session_id, **fields))
    return data["createSession"]  # type: ignore[no-any-return]


async def upsert_session(gql: GraphQLClient, session_id: str, **fields: Any) -> dict[str, Any]:
    data = await gql.ok(UPSERT_SESSION, _input(sessionId=session_id, **fields))
    return data["upsertSession"]  # type: ignore[no-any-return]


async def update_session(
    gql: GraphQLClient, session_id: str, metadata: dict[str, Any]
) -> dict[str, Any]:
    data = await gql.ok(UPDATE_SESSION, _input(sessionId=session_id, metadata=metadata))
    return data["updateSession"]  # type: ignore[no-any-return]


async def delete_session(gql: GraphQLClient, session_id: str) -> None:
    assert await gql.ok(DELETE_SESSION, {"id": session_id}) == {"deleteSession": {"deleted": True}}


async def restore_session(gql: GraphQLClient, session_id: str) -> dict[str, Any]:
    data = await gql.ok(RESTORE_SESSION, {"id": session_id})
    return data["restoreSession"]  # type: ignore[no-any-return]


def memory_inputs(
    *contents: str, uuids: list[str] | None = None, role_type: str = "USER", **extra: Any
) -> list[dict[str, Any]]:
    items = [{"roleType": role_type, "content": content, **extra} for content in contents]
    for item, value in zip(items, uuids or [], strict=False):
        item["uuid"] = value
    return items


def tagged_memories(uuids: list[str | None], tag: str) -> list[dict[str, Any]]:
    """One USER memory per uuid (None: the server makes it), contents ``<tag> #<i>``."""
    items: list[dict[str, Any]] = []
    for i, uuid in enumerate(uuids):
        item: dict[str, Any] = {"roleType": "USER", "content": f"{tag} #{i}"}
        if uuid is not None:
            item["uuid"] = uuid
        items.append(item)
    return items


async def add(
    gql: GraphQLClient,
    session_id: str,
    *contents: str,
    user_id: str | None = None,
    uuids: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """addMemories with one memory per content (uuids given in order): the payload."""
    fields: dict[str, Any] = {
        "sessionId": session_id,
        "memories": memory_inputs(*contents, uuids=uuids, **extra),
    }
    if user_id is not None:
        fields["userId"] = user_id
    data = await gql.ok(ADD_MEMORIES, {"input": fields})
    return data["addMemories"]  # type: ignore[no-any-return]


async def add_error(
    gql: GraphQLClient,
    session_id: str,
    memories: list[dict[str, Any]],
    user_id: str | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"sessionId": session_id, "memories": memories}
    if user_id is not None:
        fields["userId"] = user_id
    return await gql.error(ADD_MEMORIES, {"input": fields})


async def update_memory(gql: GraphQLClient, uuid: str, **fields: Any) -> dict[str, Any]:
    data = await gql.ok(UPDATE_MEMORY, _input(uuid=uuid, **fields))
    return data["updateMemory"]  # type: ignore[no-any-return]


async def delete_memory(gql: GraphQLClient, uuid: str) -> None:
    assert await gql.ok(DELETE_MEMORY, {"uuid": uuid}) == {"deleteMemory": {"deleted": True}}


async def get_user(gql: GraphQLClient, user_id: str) -> dict[str, Any] | None:
    return (await gql.ok(GET_USER, {"id": user_id}))["user"]  # type: ignore[no-any-return]


async def get_session(gql: GraphQLClient, session_id: str) -> dict[str, Any] | None:
    return (await gql.ok(GET_SESSION, {"id": session_id}))["session"]  # type: ignore[no-any-return]


async def get_memory(gql: GraphQLClient, uuid: str) -> dict[str, Any] | None:
    return (await gql.ok(GET_MEMORY, {"uuid": uuid}))["memory"]  # type: ignore[no-any-return]


async def get_node(gql: GraphQLClient, node_id: str) -> dict[str, Any] | None:
    return (await gql.ok(GET_NODE, {"id": node_id}))["node"]  # type: ignore[no-any-return]


async def list_users(gql: GraphQLClient) -> tuple[int, list[str]]:
    conn = (await gql.ok(LIST_USERS))["users"]
    return conn["totalCount"], [n["userId"] for n in conn["nodes"]]


async def list_sessions(gql: GraphQLClient, user_id: str | None = None) -> tuple[int, list[str]]:
    conn = (await gql.ok(LIST_SESSIONS, {"user": user_id}))["sessions"]
    return conn["totalCount"], [n["sessionId"] for n in conn["nodes"]]


def assert_code(error: dict[str, Any], code: str) -> None:
    assert error["extensions"]["code"] == code, error


async def stored(
    db: AsyncDatabase[dict[str, Any]], collection: str, **match: Any
) -> list[dict[str, Any]]:
    """Every stored document of ``collection`` matching ``match`` (live or deleted)."""
    return await db[collection].find(match).to_list()


async def stored_one(
    db: AsyncDatabase[dict[str, Any]], collection: str, **match: Any
) -> dict[str, Any]:
    docs = await stored(db, collection, **match)
    assert len(docs) == 1, docs
    return docs[0]


async def memory_count_of(db: AsyncDatabase[dict[str, Any]], session_id: str) -> tuple[int, int]:
    """(the session's stored memory_count, the number of its live memory documents)."""
    session = await stored_one(db, "sessions", session_id=session_id)
    live = await stored(db, "memories", session_id=session_id, deleted_ms=0)
    return session["memory_count"], len(live)


async def assert_count(
    gql: GraphQLClient, db: AsyncDatabase[dict[str, Any]], session_id: str, expected: int
) -> None:
    """memoryCount through GraphQL, the stored counter and the live documents all agree."""
    session = await get_session(gql, session_id)
    assert session is not None
    assert session["memoryCount"] == expected
    assert session["memories"]["totalCount"] == expected
    assert len(session["memories"]["nodes"]) == expected
    assert await memory_count_of(db, session_id) == (expected, expected)


async def live_uuids(gql: GraphQLClient, session_id: str) -> list[str]:
    """The uuids of a session's live memories, in order, read through GraphQL."""
    session = await get_session(gql, session_id)
    assert session is not None
    return [node["uuid"] for node in session["memories"]["nodes"]]


async def check_session(
    db: AsyncDatabase[dict[str, Any]],
    session_id: str,
    calls: list[list[str]],
    *,
    project: str = PROJECT,
) -> dict[str, dict[str, Any]]:
    """Assert the storage invariants of one session; return its memories by uuid.

    ``calls`` are the uuid lists of the calls that were acknowledged: each of their uuids must be
    stored (once), and the stored ``seq`` must increase in each call's order.
    """
    docs = await db["memories"].find({"project_id": project, "session_id": session_id}).to_list()
    counts = Counter(doc["uuid"] for doc in docs)
    assert not [u for u, n in counts.items() if n > 1], f"duplicated memories: {counts}"
    seqs = [doc["seq"] for doc in docs]
    assert len(seqs) == len(set(seqs)), f"seq not unique in {session_id}: {sorted(seqs)}"
    by_uuid = {doc["uuid"]: doc for doc in docs}
    for call in calls:
        missing = [u for u in call if u not in by_uuid]
        assert not missing, f"acknowledged memories lost: {missing}"
        call_seqs = [by_uuid[u]["seq"] for u in call]
        assert all(a < b for a, b in itertools.pairwise(call_seqs)), (call, call_seqs)
    sessions = (
        await db["sessions"].find({"project_id": project, "session_id": session_id}).to_list()
    )
    assert len(sessions) == 1, sessions
    session = sessions[0]
    live = sum(1 for doc in docs if not doc["deleted_ms"])
    if session["deleted_ms"]:
        assert live == 0, f"{live} live memories in deleted session {session_id}"
        assert session["memory_count"] == 0, session
    else:
        assert session["memory_count"] == live, (session["memory_count"], live)
    assert all(seq <= session["next_seq"] for seq in seqs), (seqs, session["next_seq"])
    return by_uuid
