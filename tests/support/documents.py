"""GraphQL documents and small helpers shared by the user, session, memory and merge tests."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

import httpx
from pymongo import monitoring

from memvault.db.engine import connect
from memvault.main import create_app
from tests.conftest import GraphQLClient

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.config import Settings

COLLECTIONS = ("users", "sessions", "memories")

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


class CommandCounter(monitoring.CommandListener):
    """Counts the database commands the app sends (not the handshake or monitoring)."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in {"hello", "ismaster", "isMaster", "endSessions"}:
            self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@contextlib.asynccontextmanager
async def listened_app(
    mongo_uri: str, settings: Settings, listener: monitoring.CommandListener
) -> AsyncIterator[GraphQLClient]:
    """The app on a client of its own that reports its commands to ``listener``, with a warm
    key cache as in service (so what a test counts is the query's commands, not the auth
    check's)."""
    client = connect(mongo_uri, event_listeners=[listener])
    app = create_app(dataclasses.replace(settings, auth_cache_seconds=60), client=client)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://memvault.test"
            ) as http:
                yield GraphQLClient(http)
    finally:
        await client.close()


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


async def snapshot(db: AsyncDatabase[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The whole database, to prove a rejected call changed nothing."""
    result: dict[str, list[dict[str, Any]]] = {}
    for name in COLLECTIONS:
        docs = await db[name].find({}).to_list()
        result[name] = sorted(docs, key=lambda d: str(d["_id"]))
    return result


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
