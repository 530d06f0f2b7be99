"""Input that used to poison data or fail with a 500 (issue 13, items 3, 6 and 7).

- Times: a DateTime input outside 1970-01-01T00:00:00.000Z..9999-12-31T23:59:59.999Z is refused
  (it used to be stored, and every later read of it failed); a bad time already stored (written
  around the API) is shown clamped, on the executor's shortcut and on the plain path alike, and
  never takes its siblings out of an answer.
- Merges: the merged metadata, not only the patch, must meet the metadata limits.
- Lone surrogates (JSON "\\ud800" escapes, which json.loads accepts) are refused wherever a
  string enters, and nothing is written.

Every refusal is checked for its exact code and for an unchanged database.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio
import strawberry
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from strawberry.schema.config import StrawberryConfig

from memvault.client import AsyncMemvaultClient
from memvault.client.operations import message_from
from memvault.main import create_app
from memvault.schema import build_schema
from memvault.schema.context import Context
from memvault.schema.fastpath.executor import PLAIN_LEAF
from memvault.schema.loaders import DataLoaders
from memvault.schema.mutation import Mutation
from memvault.schema.query import Query
from memvault.schema.types import (
    SCALARS,
    Memory,
    Session,
    User,
    ms_to_datetime,
    resolve_created_at,
    serialize_datetime,
    serialize_ms,
    to_global_id,
)
from memvault.security import Principal
from tests.support.asgi import running
from tests.support.documents import (
    ADD_MEMORIES,
    CREATE_USER,
    UPDATE_MEMORY,
    UPDATE_SESSION,
    UPDATE_USER,
    UPSERT_SESSION,
    UPSERT_USER,
    add,
    create_session,
    create_user,
    delete_session,
)
from tests.support.graphql import GraphQLClient, snapshot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pymongo import AsyncMongoClient

    from memvault.config import Settings

Db = AsyncDatabase[dict[str, Any]]
PROJECT = "default"  # the project of an open server
FIRST = "0001-01-01T00:00:00.000Z"
LAST = "9999-12-31T23:59:59.999Z"
EPOCH = "1970-01-01T00:00:00.000Z"


@pytest_asyncio.fixture(loop_scope="session")
async def app_transport(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[httpx.ASGITransport]:
    """The app in process, lifespan run, for a GraphQL client and the Python client alike."""
    app = create_app(settings, client=mongo_client)
    async with running(app) as served:
        yield httpx.ASGITransport(app=served)


@pytest_asyncio.fixture(loop_scope="session")
async def gql(app_transport: httpx.ASGITransport) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(transport=app_transport, base_url="http://memvault.test") as http:
        yield GraphQLClient(http)


async def seed(gql: GraphQLClient) -> None:
    await create_user(gql, "u1", metadata={"tier": "gold"})
    await add(gql, "s1", "hello", "again", user_id="u1", uuids=["m1", "m2"])
    await add(gql, "s2", "other", user_id="u1", uuids=["m3"])


@pytest_asyncio.fixture(loop_scope="session")
async def seeded(gql: GraphQLClient, db: Db) -> dict[str, list[dict[str, Any]]]:
    await seed(gql)
    return await snapshot(db)


async def refused(gql: GraphQLClient, document: str, variables: dict[str, Any]) -> dict[str, Any]:
    error = await gql.error(document, variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    return error


# --- item 3: times --------------------------------------------------------------------------

ADD_ONE = """mutation($input: AddMemoriesInput!) { addMemories(input: $input) {
  memories { createdAt } } }"""
ADD_LITERAL = """mutation { addMemories(input: {sessionId: "s9", memories: [
  {uuid: "t1", roleType: USER, content: "x", createdAt: AT}]}) { memories { createdAt } } }"""
USERS_CREATED = "query($f: UserFilter) { users(filter: $f) { totalCount } }"
SESSIONS_CREATED = "query($f: SessionFilter) { sessions(filter: $f) { totalCount } }"


def one_memory(at: str) -> dict[str, Any]:
    item = {"uuid": "t1", "roleType": "USER", "content": "x", "createdAt": at}
    return {"input": {"sessionId": "s9", "memories": [item]}}


def created(after: str | None = None, before: str | None = None) -> dict[str, Any]:
    bounds = {"createdAfter": after, "createdBefore": before}
    return {"f": {key: value for key, value in bounds.items() if value is not None}}


OUT_OF_RANGE = [
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC: stored before, then no read of it worked
    "9999-12-31T23:59:59.999-14:00",  # year 10000 in UTC
    "1969-12-31T23:59:59.999Z",
    "1900-01-01T00:00:00",
]


@pytest.mark.parametrize("given", OUT_OF_RANGE)
async def test_created_at_out_of_range_is_refused_and_writes_nothing(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]], given: str
) -> None:
    error = await refused(gql, ADD_ONE, one_memory(given))
    assert ".memories[0].createdAt" in error["message"]
    assert "1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z" in error["message"]
    error = await refused(gql, ADD_LITERAL.replace("AT", json.dumps(given)), {})
    assert "outside the accepted range" in error["message"]
    assert await snapshot(db) == seeded


@pytest.mark.parametrize("given", OUT_OF_RANGE)
@pytest.mark.parametrize("document", [USERS_CREATED, SESSIONS_CREATED], ids=["users", "sessions"])
@pytest.mark.parametrize("bound", ["after", "before"])
async def test_filter_times_out_of_range_are_refused(
    gql: GraphQLClient, seeded: dict[str, list[dict[str, Any]]], given: str, document: str,
    bound: str,
) -> None:  # fmt: skip
    error = await refused(gql, document, created(**{bound: given}))
    assert f".created{bound.title()}" in error["message"]


async def test_the_ends_of_the_range_are_stored_and_shown_exactly(
    gql: GraphQLClient, db: Db
) -> None:
    for at, shown in [
        ("1970-01-01T00:00:00Z", EPOCH),
        ("9999-12-31T23:59:59.999Z", LAST),
        ("9999-12-31T23:59:59.999+00:00", LAST),
        ("1970-01-01T01:00:00+01:00", EPOCH),
    ]:
        await db["memories"].delete_many({})
        data = await gql.ok(ADD_ONE, one_memory(at))
        assert data["addMemories"]["memories"] == [{"createdAt": shown}], at
        data = await gql.ok('{ memory(uuid: "t1") { createdAt } }')
        assert data == {"memory": {"createdAt": shown}}


async def test_filter_times_past_the_thirteen_digit_keys_order_right(
    gql: GraphQLClient, seeded: dict[str, list[dict[str, Any]]]
) -> None:
    """order_key holds 13 digits (times to 2286): a later filter time used to become a 14-digit
    key that sorted below every stored one, so ``createdAfter: 2300`` matched everything."""
    late = "2300-01-01T00:00:00Z"
    for document, name, total in ((USERS_CREATED, "users", 1), (SESSIONS_CREATED, "sessions", 2)):
        for bounds, expected in [
            (created(after=late), 0),
            (created(after=LAST), 0),
            (created(before=late), total),
            (created(after=EPOCH, before=LAST), total),
        ]:
            data = await gql.ok(document, bounds)
            assert data == {name: {"totalCount": expected}}, (name, bounds)


# Stored times (and tokenCount, metadata) written around the API, and what the API shows of them.
POISON: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "before year 1": ({"created_ms": -(10**15)}, {"createdAt": FIRST}),
    "after year 9999": ({"created_ms": 10**16, "updated_ms": 2**62}, {"createdAt": LAST}),
    "a string": ({"created_ms": "yesterday"}, {"createdAt": EPOCH}),
    "negative float": ({"created_ms": -1e300, "updated_ms": -5.5}, {"createdAt": FIRST}),
    "a float": ({"created_ms": 1.5e12}, {"createdAt": "2017-07-14T02:40:00.000Z"}),
    "a BSON date": (
        {"created_ms": datetime(2020, 1, 2, 3, 4, 5, 678000)},
        {"createdAt": "2020-01-02T03:04:05.678Z"},
    ),
    "missing": ({"created_ms": None}, {"createdAt": EPOCH}),
    "tokenCount past 32 bits": ({"token_count": 2**40}, {"tokenCount": None}),
    "odd metadata": (
        {"metadata": {"at": datetime(2020, 1, 2), "id": ObjectId("0123456789abcdef01234567")}},
        {"metadata": {"at": "2020-01-02T00:00:00.000Z", "id": "0123456789abcdef01234567"}},
    ),
}
READ_ALL = """{ user(userId: "u1") { userId createdAt sessions { nodes { sessionId createdAt
  updatedAt memories { nodes { uuid createdAt updatedAt tokenCount metadata } } } } } }"""


async def poison(db: Db) -> None:
    """Beside the healthy memories of s1, one memory per POISON case; a poisoned session too."""
    healthy = await db["memories"].find_one({"uuid": "m2"}, {"_id": 0})
    assert healthy is not None
    for n, (changes, _) in enumerate(POISON.values()):
        seq = 100 + n
        doc = {**healthy, "uuid": f"p{n}", "seq": seq, "seq_key": f"{PROJECT}\x1fs1\x1f{seq:012d}"}
        doc.update(changes)
        for name in [name for name, value in changes.items() if value is None]:
            del doc[name]
        await db["memories"].insert_one(doc)
    session = await db["sessions"].find_one({"session_id": "s2"}, {"_id": 0})
    assert session is not None
    await db["sessions"].insert_one(
        {**session, "session_id": "s3", "order_key": session["order_key"] + "x",
         "created_ms": "not a time", "updated_ms": 10**17, "metadata": {"n": [2**62]}}
    )  # fmt: skip
    await db["users"].update_one({"user_id": "u1"}, {"$set": {"created_ms": -(10**16)}})


async def test_bad_stored_values_never_fail_a_read_or_its_siblings(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]]
) -> None:
    await poison(db)
    data = await gql.ok(READ_ALL)  # no error at all: before, INTERNAL_SERVER_ERROR and user: null
    user = data["user"]
    assert user["createdAt"] == FIRST
    sessions = {s["sessionId"]: s for s in user["sessions"]["nodes"]}
    assert set(sessions) == {"s1", "s2", "s3"}
    assert (sessions["s3"]["createdAt"], sessions["s3"]["updatedAt"]) == (EPOCH, LAST)
    assert [m["uuid"] for m in sessions["s2"]["memories"]["nodes"]] == ["m3"]
    memories = {m["uuid"]: m for m in sessions["s1"]["memories"]["nodes"]}
    assert list(memories) == ["m1", "m2", *(f"p{n}" for n in range(len(POISON)))]
    for n, (case, (_, shown)) in enumerate(POISON.items()):
        memory = memories[f"p{n}"]
        assert {key: memory[key] for key in shown} == shown, case
    assert memories["p1"]["updatedAt"] == LAST
    assert memories["p3"]["updatedAt"] == "1969-12-31T23:59:59.995Z"  # -5.5 ms, truncated
    # single lookups (the loaders' path, not the window's)
    for n, (case, (_, shown)) in enumerate(POISON.items()):
        data = await gql.ok(
            f'{{ memory(uuid: "p{n}") {{ createdAt tokenCount metadata }} '
            f'node(id: "{to_global_id("Memory", f"p{n}")}") {{ ... on Memory {{ createdAt }} }} }}'
        )
        assert {key: data["memory"][key] for key in shown} == shown, case
        assert data["node"]["createdAt"] == data["memory"]["createdAt"]


async def test_the_shortcut_and_the_plain_path_show_bad_values_alike(
    gql: GraphQLClient, db: Db, settings: Settings, seeded: dict[str, list[dict[str, Any]]]
) -> None:
    """The executor's plain-leaf shortcut (SERIALISED text from milliseconds) and graphql-core's
    own path (resolver, then the DateTime scalar) answer the same for every poisoned value."""
    await poison(db)
    plain = strawberry.Schema(
        query=Query,
        mutation=Mutation,
        types=[User, Session, Memory],
        config=StrawberryConfig(scalar_map=SCALARS, disable_field_suggestions=True),
    )
    fast = build_schema(dataclasses.replace(settings, fast_path=True))  # whatever the suite's mode
    answers = []
    for schema in (fast, plain):
        context = Context(
            request=None,  # type: ignore[arg-type]  # no resolver of these fields reads it
            db=db,
            settings=settings,
            principal=Principal(project_id=PROJECT, scope="read"),
            request_id="-",
            loaders=DataLoaders(db=db, project_id=PROJECT),
        )
        result = await schema.execute(READ_ALL, context_value=context)
        assert not result.errors, result.errors
        answers.append(result.data)
    assert answers[0] == answers[1]
    leaf = fast._schema.type_map["Memory"].fields["createdAt"].extensions[PLAIN_LEAF]  # type: ignore[attr-defined]
    for value in [-(10**15), 10**16, "x", None, math.nan, math.inf, 1.5e12, True, 2**70]:
        root = Memory(
            uuid="m", seq=1, role=None, role_type=None, content="", metadata={},  # type: ignore[arg-type]
            token_count=None, created_ms=value, updated_ms=value, session_id="s",  # type: ignore[arg-type]
        )  # fmt: skip
        shown = serialize_datetime(resolve_created_at(root))
        assert leaf.complete(root) == serialize_ms(value) == shown, value
    # values the embedded engine cannot store (MongoDB can): metadata shows them as null
    leaf = fast._schema.type_map["Memory"].fields["metadata"].extensions[PLAIN_LEAF]  # type: ignore[attr-defined]
    scalar = fast._schema.type_map["JSON"]
    root.metadata = {"nan": math.nan, "l": [math.inf, 1.5], "ok": {"n": 2**63 - 1}}  # type: ignore[assignment]
    shown = {"nan": None, "l": [None, 1.5], "ok": {"n": 2**63 - 1}}
    assert leaf.complete(root) == scalar.serialize(root.metadata) == shown  # type: ignore[attr-defined]


def test_serialize_ms_is_total_and_exact_in_range() -> None:
    assert serialize_ms(-62_135_596_800_001) == FIRST
    assert serialize_ms(253_402_300_800_000) == LAST
    assert serialize_ms(0) == EPOCH
    assert serialize_ms(1_763_750_000_123) == serialize_datetime(ms_to_datetime(1_763_750_000_123))


async def test_python_client_reads_a_session_with_bad_stored_times(
    gql: GraphQLClient, db: Db, app_transport: httpx.ASGITransport,
    seeded: dict[str, list[dict[str, Any]]],
) -> None:  # fmt: skip
    await poison(db)
    async with AsyncMemvaultClient("http://memvault.test", transport=app_transport) as client:
        memory = await client.memory.get("s1")
        session = await client.memory.get_session("s3")
    by_uuid = {m.uuid: m for m in memory.messages}
    assert by_uuid["p0"].created_at == datetime.fromisoformat(FIRST)
    assert by_uuid["p1"].created_at == datetime.fromisoformat(LAST)
    assert by_uuid["p2"].created_at == datetime.fromisoformat(EPOCH)
    assert by_uuid["m1"].content == "hello"
    assert session.created_at == datetime.fromisoformat(EPOCH)


def test_python_client_parses_any_time_the_server_shows() -> None:
    node = {"uuid": "m", "content": "x", "createdAt": FIRST, "updatedAt": LAST}
    message = message_from(node)
    assert message.created_at == datetime(1, 1, 1, tzinfo=UTC)
    assert message.updated_at == datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert message_from({**node, "createdAt": "not a time"}).created_at is None


# --- item 6: merges ---------------------------------------------------------------------------

BIG = 31_500  # bytes of one value: a patch of it is within the 32 KiB limit, two are not


def big_patch(n: int) -> dict[str, Any]:
    return {f"k{n}": "x" * BIG}


MERGES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "updateUser": (UPDATE_USER, "updateUser", {"userId": "u1"}),
    "upsertUser": (UPSERT_USER, "upsertUser", {"userId": "u1"}),
    "updateSession": (UPDATE_SESSION, "updateSession", {"sessionId": "s1"}),
    "upsertSession": (UPSERT_SESSION, "upsertSession", {"sessionId": "s1"}),
    "updateMemory": (UPDATE_MEMORY, "updateMemory", {"uuid": "m1"}),
}


@pytest.mark.parametrize("case", list(MERGES))
async def test_merged_metadata_must_meet_the_size_limit(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]], case: str
) -> None:
    """40 patches of 31.5 KB used to leave 1.26 MB of metadata: each patch was checked, never
    the merged result."""
    document, name, key = MERGES[case]
    first = await gql.ok(document, {"input": {**key, "metadata": big_patch(0)}})
    assert set(first[name]["metadata"]) >= {"k0"}
    before = await snapshot(db)
    for n in range(1, 4):
        error = await refused(gql, document, {"input": {**key, "metadata": big_patch(n)}})
        assert error["extensions"]["field"] == "metadata"
        assert "metadata after the merge would be 630" in error["message"], error["message"]
        assert "the limit is 32768" in error["message"]
        assert await snapshot(db) == before
    # a patch that removes what it replaces is judged by the result: accepted
    data = await gql.ok(document, {"input": {**key, "metadata": {"k0": None, **big_patch(1)}}})
    assert "k0" not in data[name]["metadata"]
    assert len(data[name]["metadata"]["k1"]) == BIG


async def test_reviving_upsert_checks_the_merged_metadata(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]]
) -> None:
    await gql.ok(UPDATE_SESSION, {"input": {"sessionId": "s1", "metadata": big_patch(0)}})
    await delete_session(gql, "s1")
    before = await snapshot(db)
    await refused(gql, UPSERT_SESSION, {"input": {"sessionId": "s1", "metadata": big_patch(1)}})
    assert await snapshot(db) == before  # still deleted, metadata as it was
    await create_session(gql, "s1", metadata=big_patch(1))  # create starts fresh: no merge


# --- item 7: lone surrogates ------------------------------------------------------------------

S = "a\ud800b"
ARGS = {
    "user": "{ user(userId: $s) { userId } }",
    "session": "{ session(sessionId: $s) { sessionId } }",
    "memory": "{ memory(uuid: $s) { uuid } }",
    "node": "{ node(id: $s) { id } }",
    "users after": "{ users(after: $s) { totalCount } }",
    "sessions before": "{ sessions(before: $s) { totalCount } }",
    "memories after": '{ session(sessionId: "s1") { memories(after: $s) { totalCount } } }',
    "user's sessions": '{ user(userId: "u1") { sessions(before: $s) { totalCount } } }',
    "filter userId": "{ sessions(filter: {userId: $s}) { totalCount } }",
    "deleteUser": "mutation { deleteUser(userId: $s) { deleted } }",
    "forgetUser": "mutation { forgetUser(userId: $s) { deleted } }",
    "deleteSession": "mutation { deleteSession(sessionId: $s) { deleted } }",
    "restoreSession": "mutation { restoreSession(sessionId: $s) { sessionId } }",
    "deleteMemory": "mutation { deleteMemory(uuid: $s) { deleted } }",
}


def _with_variable(document: str, kind: str = "String!") -> str:
    operation, _, rest = document.partition("{")
    return f"{operation or 'query'}($s: {kind}) {{{rest}"


@pytest.mark.parametrize("case", list(ARGS))
async def test_lone_surrogate_in_an_argument_is_refused(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]], case: str
) -> None:
    kind = "ID!" if case == "node" else "String!"
    await refused(gql, _with_variable(ARGS[case], kind), {"s": S})
    assert await snapshot(db) == seeded


def memory(**fields: Any) -> dict[str, Any]:
    return {
        "input": {"sessionId": "s5", "memories": [{"roleType": "USER", "content": "x", **fields}]}
    }


INPUTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "memory content": (ADD_MEMORIES, memory(content=S), "memories[0].content"),
    "memory content, high surrogate last": (
        ADD_MEMORIES, memory(content="ok\udbff"), "memories[0].content",
    ),
    "memory content, low surrogate": (ADD_MEMORIES, memory(content="\udc00"), "content"),
    "memory role": (ADD_MEMORIES, memory(role=S), "memories[0].role"),
    "memory uuid": (ADD_MEMORIES, memory(uuid=S), "memories[0].uuid"),
    "memory metadata value": (
        ADD_MEMORIES, memory(metadata={"a": {"b": [1, S]}}), "memories[0].metadata.a.b[1]",
    ),
    "memory metadata key": (ADD_MEMORIES, memory(metadata={"a": {S: 1}}), "memories[0].metadata"),
    "memory createdAt": (ADD_MEMORIES, memory(createdAt="2020-01-01T00:00:00" + S), "createdAt"),
    "session id of addMemories": (
        ADD_MEMORIES, {"input": {"sessionId": S, "memories": [{"roleType": "USER", "content": "x"}]}},
        "sessionId",
    ),
    "user id of addMemories": (
        ADD_MEMORIES,
        {"input": {"sessionId": "s5", "userId": S, "memories": [{"roleType": "USER", "content": "x"}]}},
        "userId",
    ),
    "createUser id": (CREATE_USER, {"input": {"userId": S}}, "userId"),
    "createUser email": (CREATE_USER, {"input": {"userId": "u5", "email": f"{S}@x.io"}}, "email"),
    "createUser firstName": (CREATE_USER, {"input": {"userId": "u5", "firstName": S}}, "firstName"),
    "createUser lastName": (CREATE_USER, {"input": {"userId": "u5", "lastName": S}}, "lastName"),
    "createUser metadata": (
        CREATE_USER, {"input": {"userId": "u5", "metadata": {"deep": [[{"x": S}]]}}},
        "metadata.deep[0][0].x",
    ),
    "updateUser metadata key": (UPDATE_USER, {"input": {"userId": "u1", "metadata": {S: 1}}}, "metadata"),
    "updateSession metadata": (
        UPDATE_SESSION, {"input": {"sessionId": "s1", "metadata": {"k": S}}}, "metadata.k",
    ),
    "upsertSession metadata": (
        UPSERT_SESSION, {"input": {"sessionId": "s6", "metadata": {"k": S}}}, "metadata.k",
    ),
    "updateMemory content": (UPDATE_MEMORY, {"input": {"uuid": "m1", "content": S}}, "content"),
    "updateMemory metadata": (
        UPDATE_MEMORY, {"input": {"uuid": "m1", "metadata": {"k": [S]}}}, "metadata.k[0]",
    ),
    "users filter.metadata value": (
        "query($f: UserFilter) { users(filter: $f) { totalCount } }",
        {"f": {"metadata": {"tier": S}}}, "filter.metadata.tier",
    ),
    "users filter.metadata key": (
        "query($f: UserFilter) { users(filter: $f) { totalCount } }",
        {"f": {"metadata": {S: "gold"}}}, "filter.metadata",
    ),
    "sessions filter.metadata value": (
        "query($f: SessionFilter) { sessions(filter: $f) { totalCount } }",
        {"f": {"metadata": {"k": S}}}, "filter.metadata.k",
    ),
    "sessions filter createdAfter": (
        "query($f: SessionFilter) { sessions(filter: $f) { totalCount } }",
        {"f": {"createdAfter": S}}, "createdAfter",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(INPUTS))
async def test_lone_surrogate_in_an_input_is_refused_and_writes_nothing(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]], case: str
) -> None:
    """Before: content (and filter.metadata) with a lone surrogate answered
    INTERNAL_SERVER_ERROR, and addMemories had already created the session."""
    document, variables, field = INPUTS[case]
    error = await refused(gql, document, variables)
    assert field in error["message"], error["message"]
    assert await snapshot(db) == seeded


NUMBERS: dict[str, tuple[str, dict[str, Any], str]] = {
    "metadata NaN": (UPDATE_USER, {"input": {"userId": "u1", "metadata": {"a": math.nan}}}, "metadata.a"),
    "metadata infinity": (
        UPDATE_USER, {"input": {"userId": "u1", "metadata": {"a": [-math.inf]}}}, "metadata.a[0]",
    ),
    "metadata past 64 bits": (
        UPDATE_USER, {"input": {"userId": "u1", "metadata": {"a": 2**63}}}, "metadata.a",
    ),
    "filter past 64 bits": (
        "query($f: UserFilter) { users(filter: $f) { totalCount } }",
        {"f": {"metadata": {"n": -(2**63) - 1}}}, "filter.metadata.n",
    ),
    "filter NaN": (
        "query($f: UserFilter) { users(filter: $f) { totalCount } }",
        {"f": {"metadata": {"n": math.nan}}}, "filter.metadata.n",
    ),
    "tokenCount past 32 bits": (ADD_MEMORIES, memory(tokenCount=2**31), "tokenCount"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(NUMBERS))
async def test_numbers_that_could_not_be_stored_or_shown_are_refused(
    gql: GraphQLClient, db: Db, seeded: dict[str, list[dict[str, Any]]], case: str
) -> None:
    """The same class elsewhere: JSON bodies may hold NaN, infinities and integers of any size
    (json.loads reads them); none is stored, so none can fail a later read."""
    document, variables, field = NUMBERS[case]
    error = await refused(gql, document, variables)
    assert field in error["message"], error["message"]
    assert await snapshot(db) == seeded


async def test_lone_surrogate_as_operation_name_is_a_clean_400(
    gql: GraphQLClient, seeded: dict[str, list[dict[str, Any]]]
) -> None:
    """It used to fail encoding the 400 that echoes the name (a 500 from the server)."""
    for document in ("query A { __typename }", "query A { __typename } query B { __typename }"):
        body = json.dumps({"query": document, "operationName": S})
        response = await gql.http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        response.content.decode("utf-8")  # strict: valid UTF-8
        assert "Unknown operation named" in response.text


async def test_valid_astral_characters_are_kept(gql: GraphQLClient) -> None:
    """A surrogate pair escaped in JSON is one valid character, not a lone surrogate."""
    payload = await add(gql, "s7", "smile \U0001f600", uuids=["e1"], metadata={"\U0001f600": "é"})
    assert payload["memories"][0]["content"] == "smile \U0001f600"
    assert payload["memories"][0]["metadata"] == {"\U0001f600": "é"}
