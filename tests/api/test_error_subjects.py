"""The errors the data layer raises, as clients see them.

``app/db`` names what an error is about in its own terms (``memvault.errors.Subject``) and
``schema/errors.py`` names the argument (``extensions.field``): every code, message and field of
these errors is what clients saw when the data layer named the arguments itself, and a refused
request writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.support.graphql import snapshot

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from tests.support.graphql import GraphQLClient

CREATE_USER = "mutation($i: CreateUserInput!) { createUser(input: $i) { userId } }"
UPDATE_USER = "mutation($i: UpdateUserInput!) { updateUser(input: $i) { userId } }"
DELETE_USER = "mutation($id: String!) { deleteUser(userId: $id) { deleted } }"
FORGET_USER = "mutation($id: String!) { forgetUser(userId: $id) { deleted } }"
CREATE_SESSION = "mutation($i: CreateSessionInput!) { createSession(input: $i) { sessionId } }"
UPSERT_SESSION = "mutation($i: UpsertSessionInput!) { upsertSession(input: $i) { sessionId } }"
DELETE_SESSION = "mutation($id: String!) { deleteSession(sessionId: $id) { deleted } }"
RESTORE_SESSION = "mutation($id: String!) { restoreSession(sessionId: $id) { sessionId } }"
ADD = "mutation($i: AddMemoriesInput!) { addMemories(input: $i) { memories { uuid } } }"
UPDATE_MEMORY = "mutation($i: UpdateMemoryInput!) { updateMemory(input: $i) { uuid } }"
DELETE_MEMORY = "mutation($u: String!) { deleteMemory(uuid: $u) { deleted } }"


def memories(*uuids: str) -> list[dict[str, Any]]:
    return [{"roleType": "USER", "content": f"#{n}", "uuid": u} for n, u in enumerate(uuids)]


# (request, variables, code, message, field): field None means no extensions.field.
CASES: dict[str, tuple[str, dict[str, Any], str, str, str | None]] = {
    "create a live user": (
        CREATE_USER, {"i": {"userId": "u1"}},
        "ALREADY_EXISTS", "user 'u1' already exists", "userId",
    ),
    "update a missing user": (
        UPDATE_USER, {"i": {"userId": "nobody", "email": "a@example.com"}},
        "NOT_FOUND", "user 'nobody' not found", None,
    ),
    "delete a missing user": (
        DELETE_USER, {"id": "nobody"}, "NOT_FOUND", "user 'nobody' not found", "userId",
    ),
    "forget a missing user": (
        FORGET_USER, {"id": "nobody"}, "NOT_FOUND", "user 'nobody' not found", "userId",
    ),
    "a session of a missing user": (
        CREATE_SESSION, {"i": {"sessionId": "s9", "userId": "nobody"}},
        "NOT_FOUND", "user 'nobody' not found", "userId",
    ),
    "memories for a missing user": (
        ADD, {"i": {"sessionId": "s9", "userId": "nobody", "memories": memories("n1")}},
        "NOT_FOUND", "user 'nobody' not found", "userId",
    ),
    "create a live session": (
        CREATE_SESSION, {"i": {"sessionId": "s1"}},
        "ALREADY_EXISTS", "session 's1' already exists", "sessionId",
    ),
    "move a session to another user": (
        UPSERT_SESSION, {"i": {"sessionId": "s1", "userId": "u2"}},
        "CONFLICT", "session 's1' belongs to user 'u1', not 'u2'", "userId",
    ),
    "delete a missing session": (
        DELETE_SESSION, {"id": "nothing"}, "NOT_FOUND", "session 'nothing' not found", "sessionId",
    ),
    "restore a missing session": (
        RESTORE_SESSION, {"id": "nothing"},
        "NOT_FOUND", "session 'nothing' not found", "sessionId",
    ),
    "restore a session of a deleted user": (
        RESTORE_SESSION, {"id": "s3"}, "CONFLICT",
        "session 's3' belongs to deleted user 'u3'; restore or recreate the user first",
        "sessionId",
    ),
    "a uuid of another session": (
        ADD, {"i": {"sessionId": "s2", "memories": memories("n1", "m1")}},
        "CONFLICT", "memory uuid 'm1' already belongs to another session", "memories.uuid",
    ),
    "a uuid given twice": (
        ADD, {"i": {"sessionId": "s2", "memories": memories("n1", "n2", "n1")}},
        "BAD_USER_INPUT", "memories[2].uuid repeats memories[0].uuid ('n1')", "memories[2].uuid",
    ),
    "a bad session id before a uuid given twice": (
        ADD, {"i": {"sessionId": "", "memories": memories("n1", "n1")}},
        "BAD_USER_INPUT", "sessionId must be 1-256 characters, got 0", "sessionId",
    ),
    "update a missing memory": (
        UPDATE_MEMORY, {"i": {"uuid": "nothing", "content": "new"}},
        "NOT_FOUND", "memory 'nothing' not found", None,
    ),
    "delete a missing memory": (
        DELETE_MEMORY, {"u": "nothing"}, "NOT_FOUND", "memory 'nothing' not found", "uuid",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
async def test_data_layer_errors_name_the_argument(
    case: str, gql: GraphQLClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    for user in ("u1", "u2", "u3"):
        await gql.ok(CREATE_USER, {"i": {"userId": user}})
    await gql.ok(ADD, {"i": {"sessionId": "s1", "userId": "u1", "memories": memories("m1")}})
    await gql.ok(CREATE_SESSION, {"i": {"sessionId": "s3", "userId": "u3"}})
    await gql.ok(DELETE_USER, {"id": "u3"})  # and with it s3
    before = await snapshot(db)
    document, variables, code, message, field = CASES[case]

    error = await gql.error(document, variables)

    assert error["extensions"]["code"] == code
    assert error["message"] == message
    assert error["extensions"].get("field") == field
    assert await snapshot(db) == before
