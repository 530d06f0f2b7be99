"""Property-based tests through the GraphQL endpoint (issue 6): arbitrary metadata, ids, contents
and pagination arguments. The server never answers HTTP 500 or INTERNAL_SERVER_ERROR; it accepts
exactly what the documented rules allow (checked by this file's own model of them); an accepted
write reads back exactly as written, metadata after a merge equals the RFC 7396 oracle's
(tests/support/merge_oracle.py); a rejected write changes nothing; a page is exactly the model's
Relay slice.

Hypothesis runs each test's examples against one app and one database (function-scoped fixtures):
each example uses ids of its own, or clears the collections first when the ids are the input.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import tempfile
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.graphql import GraphQLClient, snapshot
from tests.support.merge_oracle import rfc7396

Db = AsyncDatabase[dict[str, Any]]

# Hypothesis keeps caches in ./.hypothesis by default: keep the repository clean.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "memvault-hypothesis"))
FUZZ = settings(
    max_examples=int(os.environ.get("MEMVAULT_FUZZ_EXAMPLES") or 60),  # more for a deeper search
    deadline=None,
    database=None,  # nothing written into the repository; a failure prints its example
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FRESH = itertools.count()

# The documented limits (README "Limits"), restated here as the model.
MAX_ID = 256
MAX_KEY = 128
MAX_DEPTH = 10
MAX_METADATA_BYTES = 32 * 1024
MAX_CONTENT_BYTES = 256 * 1024
MAX_PAGE = 100
DEFAULT_PAGE = 20


# ---------------------------------------------------------------------------------------------
# The model


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_id(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_ID
        and not any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in value)
    )


def valid_text(value: Any) -> bool:
    """Optional short strings (role): at most MAX_ID characters, no control characters."""
    return value is None or (
        len(value) <= MAX_ID and not any(unicodedata.category(c) in {"Cc", "Cs"} for c in value)
    )


def valid_content(value: str) -> bool:
    return (
        len(value) >= 1
        and len(value.encode("utf-8", "surrogatepass")) <= MAX_CONTENT_BYTES
        and "\x00" not in value
        and encodable(value)
    )


def valid_metadata(value: Any) -> bool:
    """A JSON object within the documented size, depth, key and value rules."""
    if not isinstance(value, dict) or not _valid_value(value, 1):
        return False
    text = json.dumps(value, ensure_ascii=False)
    return encodable(text) and len(text.encode("utf-8")) <= MAX_METADATA_BYTES


def _valid_value(value: Any, depth: int) -> bool:
    if isinstance(value, dict):
        return depth <= MAX_DEPTH and all(
            isinstance(k, str)
            and 1 <= len(k) <= MAX_KEY
            and not k.startswith("$")
            and "." not in k
            and "\x00" not in k
            and _valid_value(v, depth + 1)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return depth <= MAX_DEPTH and all(_valid_value(v, depth + 1) for v in value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    assert isinstance(value, str)
    return "\x00" not in value


def same(a: Any, b: Any) -> bool:
    """Equal as JSON, types included: ``True`` is not ``1``, ``1`` is not ``1.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ---------------------------------------------------------------------------------------------
# Strategies

odd_chars = st.sampled_from(
    ["\x00", "\x07", "\n", "\u200b", "\ud800", "\udfff", "\uffff", "é", "𝄞"]
)
texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.one_of(st.characters(), odd_chars), max_size=12),
)
keys = st.one_of(
    st.text(min_size=1, max_size=10),
    texts,
    st.sampled_from(["$set", "a.b", "", "k" * 129, "k" * 128, "_id", "metadata", "__proto__"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(),  # some beyond int64
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(),  # some NaN and infinities (sent as JSON's NaN/Infinity)
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20,
)
metadata = st.one_of(
    st.dictionaries(keys, json_values, max_size=6),
    json_values,  # not always an object
)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


patches = st.one_of(metadata, st.sampled_from([deep(MAX_DEPTH), deep(MAX_DEPTH + 1)]))
ids = st.one_of(
    st.text(min_size=1, max_size=20),
    texts,
    st.text(max_size=300, alphabet="ab"),
    st.sampled_from(["a" * MAX_ID, "a" * (MAX_ID + 1)]),
)
contents = st.one_of(
    st.text(min_size=1, max_size=50),
    texts,
    st.sampled_from(["x" * MAX_CONTENT_BYTES, "é" * (MAX_CONTENT_BYTES // 2 + 1)]),
)


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


def assert_no_internal(body: dict[str, Any]) -> None:
    assert "INTERNAL_SERVER_ERROR" not in error_codes(body), body
    assert all(code for code in error_codes(body)), body


# ---------------------------------------------------------------------------------------------
# Metadata merges


KINDS = {
    "user": (
        "mutation($id: String!, $m: JSON) { createUser(input: {userId: $id, metadata: $m}) { metadata } }",
        "mutation($id: String!, $m: JSON) { updateUser(input: {userId: $id, metadata: $m}) { metadata } }",
        "query($id: String!) { user(userId: $id) { metadata } }",
        ("users", "user_id"),
    ),
    "session": (
        "mutation($id: String!, $m: JSON) { createSession(input: {sessionId: $id, metadata: $m}) { metadata } }",
        "mutation($id: String!, $m: JSON!) { updateSession(input: {sessionId: $id, metadata: $m}) { metadata } }",
        "query($id: String!) { session(sessionId: $id) { metadata } }",
        ("sessions", "session_id"),
    ),
    "memory": (
        'mutation($id: String!, $m: JSON) { addMemories(input: {sessionId: $id, memories: [{uuid: $id, roleType: USER, content: "x", metadata: $m}]}) { memories { metadata } } }',
        "mutation($id: String!, $m: JSON) { updateMemory(input: {uuid: $id, metadata: $m}) { metadata } }",
        "query($id: String!) { memory(uuid: $id) { metadata } }",
        ("memories", "uuid"),
    ),
}


def answered_metadata(data: dict[str, Any]) -> Any:
    (value,) = data.values()
    if "memories" in value:
        (value,) = value["memories"]
    return value["metadata"]


@pytest.mark.parametrize("kind", list(KINDS))
@FUZZ
@given(initial=metadata, changes=st.lists(patches, min_size=1, max_size=3))
async def test_metadata_merges_read_back_as_rfc7396(
    gql: GraphQLClient, db: Db, kind: str, initial: Any, changes: list[Any]
) -> None:
    create, update, read, (collection, key) = KINDS[kind]
    ident = f"fz{next(FRESH)}"

    body = await gql.raw(create, {"id": ident, "m": initial})
    assert_no_internal(body)
    if initial is not None and not valid_metadata(initial):  # null: no metadata
        assert error_codes(body) == ["BAD_USER_INPUT"], (initial, body)
        assert await db[collection].count_documents({key: ident}) == 0
        return
    assert not body.get("errors"), (initial, body)
    expected = rfc7396({}, initial or {})
    assert same(answered_metadata(body["data"]), expected), (body, expected)

    for patch in changes:
        before = await db[collection].find_one({key: ident}, {"_id": 0})
        body = await gql.raw(update, {"id": ident, "m": patch})
        assert_no_internal(body)
        if valid_metadata(patch) or (patch is None and kind != "session"):  # null: no change
            assert not body.get("errors"), (patch, body)
            expected = rfc7396(expected, patch or {})
            assert same(answered_metadata(body["data"]), expected), (patch, body, expected)
        else:
            assert error_codes(body) == ["BAD_USER_INPUT"], (patch, body)
            assert await db[collection].find_one({key: ident}, {"_id": 0}) == before
        stored = await gql.ok(read, {"id": ident})
        assert same(answered_metadata(stored), expected), (stored, expected)


# ---------------------------------------------------------------------------------------------
# Ids and contents


CREATE_USER = "mutation($id: String!) { createUser(input: {userId: $id}) { userId } }"
ADD = """mutation($input: AddMemoriesInput!) {
  addMemories(input: $input) { session { sessionId userId memoryCount } memories { uuid seq role content } }
}"""
READ = """query($user: String!, $session: String!, $uuid: String!) {
  user(userId: $user) { userId sessions { totalCount nodes { sessionId } } }
  session(sessionId: $session) { sessionId userId memoryCount memories { nodes { uuid content role } } }
  memory(uuid: $uuid) { uuid content role session { sessionId } }
}"""


async def clear(db: Db) -> None:
    for name in ("users", "sessions", "memories"):
        await db[name].delete_many({})


@FUZZ
@given(user=ids, session=ids, uuid=ids, content=contents, role=st.one_of(st.none(), texts))
async def test_ids_and_contents_are_stored_exactly_or_refused(
    gql: GraphQLClient, db: Db, user: str, session: str, uuid: str, content: str, role: str | None
) -> None:
    await clear(db)

    body = await gql.raw(CREATE_USER, {"id": user})
    assert_no_internal(body)
    if not valid_id(user):
        assert error_codes(body) == ["BAD_USER_INPUT"], (user, body)
        assert await snapshot(db) == {"users": [], "sessions": [], "memories": []}
        user = "fallback-user"
        await gql.ok(CREATE_USER, {"id": user})
    else:
        assert body["data"]["createUser"]["userId"] == user

    before = await snapshot(db)
    memory = {"uuid": uuid, "roleType": "USER", "content": content, "role": role}
    body = await gql.raw(
        ADD, {"input": {"sessionId": session, "userId": user, "memories": [memory]}}
    )
    assert_no_internal(body)
    accepted = valid_id(session) and valid_id(uuid) and valid_content(content) and valid_text(role)
    if not accepted:
        assert error_codes(body) == ["BAD_USER_INPUT"], (session, uuid, content[:50], role, body)
        assert await snapshot(db) == before
        return
    assert not body.get("errors"), body
    payload = body["data"]["addMemories"]
    assert payload["session"] == {"sessionId": session, "userId": user, "memoryCount": 1}
    assert payload["memories"] == [{"uuid": uuid, "seq": 1, "role": role, "content": content}]

    read = await gql.ok(READ, {"user": user, "session": session, "uuid": uuid})
    assert read["user"] == {
        "userId": user,
        "sessions": {"totalCount": 1, "nodes": [{"sessionId": session}]},
    }
    assert read["session"] == {
        "sessionId": session,
        "userId": user,
        "memoryCount": 1,
        "memories": {"nodes": [{"uuid": uuid, "content": content, "role": role}]},
    }
    assert read["memory"] == {
        "uuid": uuid,
        "content": content,
        "role": role,
        "session": {"sessionId": session},
    }
    # the same call again is a retry: nothing more stored
    again = await gql.ok(ADD, {"input": {"sessionId": session, "memories": [memory]}})
    assert again["addMemories"]["memories"] == payload["memories"]
    assert await db["memories"].count_documents({}) == 1


@FUZZ
@given(
    global_id=st.one_of(
        texts,
        st.text(max_size=400),
        st.builds(
            lambda t, k: (
                base64.urlsafe_b64encode(f"{t}:{k}".encode("utf-8", "surrogatepass"))
                .decode()
                .rstrip("=")
            ),
            st.sampled_from(["User", "Session", "Memory", "Nope", ""]),
            texts,
        ),
    )
)
async def test_node_lookup_by_any_id_is_null_or_bad_input(
    gql: GraphQLClient, global_id: str
) -> None:
    body = await gql.raw("query($id: ID!) { node(id: $id) { id } }", {"id": global_id})
    assert_no_internal(body)
    assert error_codes(body) in ([], ["BAD_USER_INPUT"]), body
    if not body.get("errors"):
        assert body["data"]["node"] is None  # nothing is stored in this test


# ---------------------------------------------------------------------------------------------
# Pagination


MEMORIES_PAGE = """query($first: Int, $after: String, $last: Int, $before: String) {
  session(sessionId: "paged") {
    memories(first: $first, after: $after, last: $last, before: $before) {
      totalCount
      edges { cursor node { seq } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}"""
USERS_PAGE = """query($first: Int, $after: String, $last: Int, $before: String) {
  users(first: $first, after: $after, last: $last, before: $before) {
    totalCount
    edges { cursor node { userId } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""
SEQS = [1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]
DELETED = {4, 8}  # memories 4 and 8 are deleted: live seqs have gaps


def forge(kind: str, key: int | str) -> str:
    """A cursor in the format the server's cursors have (base64 of ``mv1:kind:tag:key``)."""
    tag = "n" if isinstance(key, int) else "s"
    raw = f"mv1:{kind}:{tag}:{key}".encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def relay_slice(
    keys: list[Any], first: int | None, after: Any, last: int | None, before: Any
) -> tuple[list[Any], bool, bool]:
    """The page and (hasNextPage, hasPreviousPage) that DESIGN.md's Relay rules give."""
    window = [k for k in keys if (after is None or k > after) and (before is None or k < before)]
    if last is not None:
        page = window[max(0, len(window) - last) :]
        has_previous = len(window) > last
        has_next = before is not None and any(k >= before for k in keys)
    else:
        size = DEFAULT_PAGE if first is None else first
        page = window[:size]
        has_next = len(window) > size
        has_previous = after is not None and any(k <= after for k in keys)
    return page, has_next, has_previous


async def seed_pages(gql: GraphQLClient, db: Db) -> None:
    if await db["memories"].count_documents({}):
        return
    memories = [
        {"uuid": f"p{seq}", "roleType": "USER", "content": f"m{seq}"} for seq in range(1, 26)
    ]
    await gql.ok(ADD, {"input": {"sessionId": "paged", "memories": memories}})
    for seq in DELETED:
        await gql.ok(
            "mutation($u: String!) { deleteMemory(uuid: $u) { deleted } }", {"u": f"p{seq}"}
        )
    for n in range(7):
        await gql.ok(CREATE_USER, {"id": f"pu{n}"})


sizes = st.one_of(st.none(), st.integers(-3, 110), st.integers(), st.sampled_from([0, 1, 100, 101]))


def memory_cursors() -> st.SearchStrategy[tuple[str, Any]]:
    """(cursor, its key or None when it is not a valid memories cursor)."""
    real = st.sampled_from(SEQS + sorted(DELETED) + [0, 26, 1000]).map(
        lambda k: (forge("memories", k), k)
    )
    odd = st.integers().map(lambda k: (forge("memories", k), k if -(2**63) <= k < 2**63 else "?"))
    wrong = st.one_of(
        texts.map(lambda t: (t, None)),
        texts.map(lambda t: (forge("memories", t), "?" if t else None)),  # a string key
        st.integers(0, 30).map(lambda k: (forge("users", k), None)),
    )
    return st.one_of(st.none(), real, odd, wrong)


@FUZZ
@given(first=sizes, last=sizes, after=memory_cursors(), before=memory_cursors())
# found by this test: a page of size 0 said nothing was beyond it; a forged cursor with a string
# key for memories was an internal error
@example(first=None, last=0, after=None, before=None)
@example(first=None, last=24, after=None, before=None)
@example(first=0, last=None, after=None, before=None)
@example(first=None, last=None, after=None, before=(forge("memories", "x"), "?"))
@example(first=3, last=None, after=(forge("memories", 2**70), "?"), before=None)
async def test_memory_pages_are_the_relay_slice(
    gql: GraphQLClient,
    db: Db,
    first: int | None,
    last: int | None,
    after: tuple[str, Any] | None,
    before: tuple[str, Any] | None,
) -> None:
    await seed_pages(gql, db)
    variables = {
        "first": first,
        "last": last,
        "after": after[0] if after else None,
        "before": before[0] if before else None,
    }
    body = await gql.raw(MEMORIES_PAGE, variables)
    assert_no_internal(body)
    in_int32 = all(v is None or -(2**31) <= v < 2**31 for v in (first, last))
    sizes_ok = all(v is None or 0 <= v <= MAX_PAGE for v in (first, last))
    cursors_ok = all(c is None or c[1] is not None for c in (after, before))
    if "?" in {c[1] for c in (after, before) if c}:  # forged keys the model leaves to the server
        assert set(error_codes(body)) <= {"BAD_USER_INPUT"}, body
        return
    if not (in_int32 and sizes_ok and cursors_ok) or (first is not None and last is not None):
        assert error_codes(body), (variables, body)
        assert set(error_codes(body)) == {"BAD_USER_INPUT"}, (variables, body)
        return
    assert not body.get("errors"), (variables, body)
    page, has_next, has_previous = relay_slice(
        SEQS, first, after[1] if after else None, last, before[1] if before else None
    )
    connection = body["data"]["session"]["memories"]
    assert [e["node"]["seq"] for e in connection["edges"]] == page, variables
    assert connection["totalCount"] == len(SEQS)
    info = connection["pageInfo"]
    assert (info["hasNextPage"], info["hasPreviousPage"]) == (has_next, has_previous), variables
    cursors = [e["cursor"] for e in connection["edges"]]
    assert (info["startCursor"], info["endCursor"]) == (
        (cursors[0], cursors[-1]) if cursors else (None, None)
    )


@FUZZ
@given(
    first=sizes,
    last=sizes,
    after_at=st.one_of(st.none(), st.integers(0, 6), texts),
    before_at=st.one_of(st.none(), st.integers(0, 6), texts),
)
async def test_user_pages_are_the_relay_slice(
    gql: GraphQLClient,
    db: Db,
    first: int | None,
    last: int | None,
    after_at: int | str | None,
    before_at: int | str | None,
) -> None:
    await seed_pages(gql, db)
    stored = (
        await db["users"].find({}, {"order_key": 1, "user_id": 1}).sort("order_key", 1).to_list()
    )
    keys = [doc["order_key"] for doc in stored]
    names = {doc["order_key"]: doc["user_id"] for doc in stored}

    def cursor(at: int | str | None) -> tuple[str | None, Any]:
        if at is None:
            return None, None
        if isinstance(at, int):
            return forge("users", keys[at]), keys[at]
        return at, "bad"  # random text is not a cursor

    after, after_key = cursor(after_at)
    before, before_key = cursor(before_at)
    body = await gql.raw(
        USERS_PAGE, {"first": first, "last": last, "after": after, "before": before}
    )
    assert_no_internal(body)
    valid = (
        all(v is None or 0 <= v <= MAX_PAGE for v in (first, last))
        and (first is None or last is None)
        and "bad" not in (after_key, before_key)
    )
    if not valid:
        assert error_codes(body), body
        assert set(error_codes(body)) == {"BAD_USER_INPUT"}, body
        return
    assert not body.get("errors"), body
    page, has_next, has_previous = relay_slice(keys, first, after_key, last, before_key)
    connection = body["data"]["users"]
    assert [e["node"]["userId"] for e in connection["edges"]] == [names[k] for k in page]
    info = connection["pageInfo"]
    assert (info["hasNextPage"], info["hasPreviousPage"]) == (has_next, has_previous)
    assert connection["totalCount"] == len(keys)
