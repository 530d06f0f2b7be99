"""Concurrency: racing writers never lose, duplicate or reorder a memory (issue 6).

Every test checks the stored documents directly (``check_session``, tests/support/documents.py), not only what the API
answers: each uuid stored once, ``seq`` unique per session and increasing in each call's input
order, ``memory_count`` equal to the live memories (0 for a deleted session).

The in-process tests run many requests on one event loop through the ``gql`` fixture (one API
process); ``test_two_server_processes_*`` runs the same race over TCP against two ``memvault serve``
processes sharing one database, the way a scaled-out deployment runs.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tests.support.commands import (
    Hold,
    deletion_cascade_of,
    memory_count_increment,
    once,
    then_set,
)
from tests.support.documents import (
    ADD_MEMORIES_BRIEF,
    DELETE_SESSION,
    PROJECT,
    check_session,
    tagged_memories,
)
from tests.support.merge_oracle import rfc7396
from tests.support.server import LiveServer, serve_environment, serving

if TYPE_CHECKING:
    from tests.support.graphql import GraphQLClient

Db = AsyncDatabase[dict[str, Any]]

READ_SESSION = """query($id: String!) {
  session(sessionId: $id) { memoryCount memories(first: 100) { totalCount nodes { uuid seq } } }
}"""
RESTORE_SESSION = "mutation($id: String!) { restoreSession(sessionId: $id) { memoryCount } }"


# ---------------------------------------------------------------------------------------------
# Racing calls, and what their answers and the stored documents must show


@dataclass
class Plan:
    """The 50 racing calls of one session: originals, identical retries, extended retries and
    calls without uuids (the server makes them), in a shuffled but seeded order."""

    session_id: str
    calls: list[list[dict[str, Any]]] = field(default_factory=list)


def fifty_calls(session_id: str, seed: int) -> Plan:
    rng = random.Random(seed)
    originals: list[list[dict[str, Any]]] = []
    for call in range(25):
        uuids: list[str | None] = [f"{session_id}-c{call}-{i}" for i in range(rng.randint(1, 6))]
        originals.append(tagged_memories(uuids, f"{session_id}/c{call}"))
    calls = list(originals)
    calls += [list(rng.choice(originals)) for _ in range(15)]  # identical retries
    for extra in range(5):  # a retry that also carries the next messages
        base = rng.choice(originals)
        more = tagged_memories([f"{session_id}-x{extra}-{i}" for i in range(2)], f"x{extra}")
        calls.append(base + more)
    calls += [tagged_memories([None] * rng.randint(1, 4), f"anon{n}") for n in range(5)]
    rng.shuffle(calls)
    assert len(calls) == 50
    return Plan(session_id, calls)


def check_payloads(plan: Plan, payloads: list[dict[str, Any]]) -> list[list[str]]:
    """Each call's answer lists its memories in input order with increasing seq; a uuid answered
    by two calls has one seq. Returns the uuid lists (server-made ones included)."""
    seen: dict[str, tuple[int, str]] = {}
    uuid_lists = []
    for call, payload in zip(plan.calls, payloads, strict=True):
        memories = payload["memories"]
        assert [m["content"] for m in memories] == [item["content"] for item in call]
        given = [item.get("uuid") for item in call]
        assert all(g is None or g == m["uuid"] for g, m in zip(given, memories, strict=True))
        seqs = [m["seq"] for m in memories]
        assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
        for memory in memories:
            key = (memory["seq"], memory["content"])
            assert seen.setdefault(memory["uuid"], key) == key, memory
        uuid_lists.append([m["uuid"] for m in memories])
    return uuid_lists


async def check_plan_stored(db: Db, gql: GraphQLClient, plan: Plan, uuids: list[list[str]]) -> None:
    distinct = {u for call in uuids for u in call}
    stored = await check_session(db, plan.session_id, uuids)
    assert set(stored) == distinct
    assert all(not doc["deleted_ms"] for doc in stored.values())
    session = (await gql.ok(READ_SESSION, {"id": plan.session_id}))["session"]
    assert session["memoryCount"] == len(distinct)
    assert session["memories"]["totalCount"] == len(distinct)
    in_seq_order = sorted(stored.values(), key=lambda doc: doc["seq"])
    assert [n["uuid"] for n in session["memories"]["nodes"]] == [d["uuid"] for d in in_seq_order][
        :100
    ]


# ---------------------------------------------------------------------------------------------
# In process: one API process, many requests on its event loop


@pytest.mark.parametrize("session_exists", [False, True], ids=["new-session", "existing-session"])
async def test_fifty_concurrent_add_memories_with_retries_store_each_once_in_order(
    gql: GraphQLClient, db: Db, session_exists: bool
) -> None:
    plan = fifty_calls("s-race", seed=6 + session_exists)
    if session_exists:
        await gql.ok(
            ADD_MEMORIES_BRIEF,
            {"input": {"sessionId": plan.session_id, "memories": tagged_memories(["pre"], "pre")}},
        )

    results = await asyncio.gather(
        *(
            gql.ok(ADD_MEMORIES_BRIEF, {"input": {"sessionId": plan.session_id, "memories": call}})
            for call in plan.calls
        )
    )

    uuids = check_payloads(plan, [r["addMemories"] for r in results])
    if session_exists:
        uuids.append(["pre"])
    await check_plan_stored(db, gql, plan, uuids)


@pytest.mark.parametrize(
    ("calls", "size", "stored_before"),
    [(20, 50, 0), (2, 200, 0), (5, 1000, 0), (20, 100, 20)],
    ids=["20x50", "2x200", "5x1000", "20x100-after-a-partial-original"],
)
async def test_identical_concurrent_add_memories_all_succeed_with_one_answer(
    gql: GraphQLClient, db: Db, calls: int, size: int, stored_before: int
) -> None:
    """Identical retries racing each other (and the original) all succeed with the same answer
    (issue 13, item 4: a pass learnt one racing uuid, so from 50 memories on calls failed).
    ``stored_before``: an original stored that many of the first memories, then failed."""
    await race_identical_calls(gql, db, calls=calls, size=size, stored_before=stored_before)


@pytest.mark.slow
async def test_identical_add_memories_racing_document_by_document_all_succeed(
    gql: GraphQLClient, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MongoDB inserts the documents of one ``insert_many`` one by one, and concurrent writers'
    documents land in between (the embedded engine runs a command at a time): so racing identical
    calls clash in the middle of their batches, again and again."""
    original = AsyncCollection.insert_many

    async def one_by_one(coll: AsyncCollection[Any], documents: Any, **kwargs: Any) -> Any:
        if coll.name != "memories":
            return await original(coll, documents, **kwargs)
        docs = list(documents)
        for index, doc in enumerate(docs):
            try:
                await coll.insert_one(doc)
            except DuplicateKeyError as exc:
                error = {"index": index, "code": exc.code, "errmsg": str(exc)}
                raise BulkWriteError({"writeErrors": [error], "nInserted": index}) from exc
            await asyncio.sleep(0)
        return None

    monkeypatch.setattr(AsyncCollection, "insert_many", one_by_one)
    await race_identical_calls(gql, db, calls=20, size=50, stored_before=0)


async def race_identical_calls(
    gql: GraphQLClient, db: Db, *, calls: int, size: int, stored_before: int
) -> None:
    """Race ``calls`` identical addMemories of ``size`` memories: none fails, all answer the same,
    each memory stored once, in call order, answered with its stored seq and content."""
    sid = "s-retries"
    uuids = [f"{sid}-{i}" for i in range(size)]
    call = tagged_memories(list(uuids), sid)
    if stored_before:
        await gql.ok(
            ADD_MEMORIES_BRIEF, {"input": {"sessionId": sid, "memories": call[:stored_before]}}
        )

    bodies = await asyncio.gather(
        *(
            gql.raw(ADD_MEMORIES_BRIEF, {"input": {"sessionId": sid, "memories": call}})
            for _ in range(calls)
        )
    )

    failed = [b["errors"] for b in bodies if b.get("errors")]
    assert not failed, f"{len(failed)} of {calls} failed: {failed[0]}"
    answers = [b["data"]["addMemories"]["memories"] for b in bodies]
    assert all(answer == answers[0] for answer in answers)
    stored = await check_session(db, sid, [uuids])
    assert set(stored) == set(uuids)
    assert answers[0] == [
        {"uuid": u, "seq": stored[u]["seq"], "content": stored[u]["content"]} for u in uuids
    ]
    assert [m["content"] for m in answers[0]] == [item["content"] for item in call]
    session = (await gql.ok(READ_SESSION, {"id": sid}))["session"]
    assert session["memoryCount"] == session["memories"]["totalCount"] == size


@pytest.mark.parametrize("kind", ["session", "user", "memory"])
async def test_fifty_concurrent_metadata_merges_keep_every_key(
    gql: GraphQLClient, db: Db, kind: str
) -> None:
    await gql.ok(
        'mutation { createUser(input: {userId: "u1", metadata: {base: 0}}) { userId }'
        ' addMemories(input: {sessionId: "s1", memories: [{uuid: "m1", roleType: USER, content: "x",'
        " metadata: {base: 0}}]}) { session { sessionId } } }"
    )
    await gql.ok(
        'mutation { updateSession(input: {sessionId: "s1", metadata: {base: 0}}) { sessionId } }'
    )
    mutation, id_field, collection, key_field = {
        "session": ("updateSession", "sessionId", "sessions", "session_id"),
        "user": ("updateUser", "userId", "users", "user_id"),
        "memory": ("updateMemory", "uuid", "memories", "uuid"),
    }[kind]
    ident = {"session": "s1", "user": "u1", "memory": "m1"}[kind]
    input_type = mutation[0].upper() + mutation[1:] + "Input"
    document = f"mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ metadata }} }}"

    def patch(i: int) -> dict[str, Any]:
        # top-level keys, keys inside one shared object, and a removal of the base key
        if i % 3 == 0:
            return {f"k{i}": i}
        if i % 3 == 1:
            return {"nested": {f"k{i}": [i, {"deep": True}]}}
        return {f"k{i}": {"v": f"{i}"}, "base": None}

    await asyncio.gather(
        *(gql.ok(document, {"input": {id_field: ident, "metadata": patch(i)}}) for i in range(50))
    )

    expected: dict[str, Any] = {"base": 0}
    for i in range(50):
        expected = rfc7396(expected, patch(i))
    doc = await db[collection].find_one({"project_id": PROJECT, key_field: ident})
    assert doc is not None
    assert doc["metadata"] == expected
    assert len(expected["nested"]) == len([i for i in range(50) if i % 3 == 1])


@pytest.mark.parametrize("state", ["new", "soft-deleted"])
async def test_concurrent_create_user_of_one_id_one_wins(
    gql: GraphQLClient, db: Db, state: str
) -> None:
    if state == "soft-deleted":
        await gql.ok('mutation { createUser(input: {userId: "u1", firstName: "old"}) { userId } }')
        await gql.ok('mutation { deleteUser(userId: "u1") { deleted } }')
    document = (
        'mutation($n: String!) { createUser(input: {userId: "u1", firstName: $n}) { firstName } }'
    )

    bodies = await asyncio.gather(*(gql.raw(document, {"n": f"n{i}"}) for i in range(50)))

    winners = [b["data"]["createUser"]["firstName"] for b in bodies if not b.get("errors")]
    codes = Counter(b["errors"][0]["extensions"]["code"] for b in bodies if b.get("errors"))
    assert len(winners) == 1, (winners, codes)
    assert codes == Counter({"ALREADY_EXISTS": 49})
    docs = await db["users"].find({"project_id": PROJECT, "user_id": "u1"}).to_list()
    assert len(docs) == 1
    assert docs[0]["first_name"] == winners[0]
    assert docs[0]["deleted_ms"] == 0


async def test_concurrent_create_session_of_one_id_one_wins(gql: GraphQLClient, db: Db) -> None:
    document = (
        'mutation($m: JSON) { createSession(input: {sessionId: "s1", metadata: $m}) { metadata } }'
    )

    bodies = await asyncio.gather(*(gql.raw(document, {"m": {"n": i}}) for i in range(50)))

    winners = [b["data"]["createSession"]["metadata"] for b in bodies if not b.get("errors")]
    codes = Counter(b["errors"][0]["extensions"]["code"] for b in bodies if b.get("errors"))
    assert len(winners) == 1, (winners, codes)
    assert codes == Counter({"ALREADY_EXISTS": 49})
    docs = await db["sessions"].find({"project_id": PROJECT, "session_id": "s1"}).to_list()
    assert [d["metadata"] for d in docs] == winners


async def after(delay: float, coro: Any) -> Any:
    await asyncio.sleep(delay)
    return await coro


@pytest.mark.slow
@pytest.mark.parametrize("adders", [1, 3])
async def test_concurrent_delete_session_and_add_memories_is_one_order_or_the_other(
    gql: GraphQLClient, db: Db, adders: int
) -> None:
    """deleteSession racing addMemories: each call's memories are either all deleted by that
    deletion (add, then delete: restoreSession brings them back) or all live in the session the
    add revived (delete, then add). Never a live memory in a deleted session, never a count off."""
    rng = random.Random(60 + adders)
    orders: Counter[str] = Counter()
    for round_ in range(30):
        sid = f"s{round_}"
        pre = [f"{sid}-pre{i}" for i in range(3)]
        await gql.ok(
            ADD_MEMORIES_BRIEF,
            {"input": {"sessionId": sid, "memories": tagged_memories(list(pre), "pre")}},
        )
        calls: list[list[str]] = [[f"{sid}-a{a}-{i}" for i in range(3)] for a in range(adders)]
        adds = [
            after(
                rng.uniform(0, 0.005),
                gql.ok(
                    ADD_MEMORIES_BRIEF,
                    {"input": {"sessionId": sid, "memories": tagged_memories(list(c), "a")}},
                ),
            )
            for c in calls
        ]
        # the deletion lands anywhere from before the adds start to after they end
        delete = after(rng.uniform(0, 0.05), gql.ok(DELETE_SESSION, {"id": sid}))

        await asyncio.gather(delete, *adds)

        stored = await check_session(db, sid, [pre, *calls])
        tokens = {stored[u]["deletion_id"] for u in pre}
        assert all(stored[u]["deleted_ms"] for u in pre)  # the deletion took them, in any order
        assert len(tokens) == 1, tokens
        token = tokens.pop()
        session = await db["sessions"].find_one({"project_id": PROJECT, "session_id": sid})
        assert session is not None
        for call in calls:
            states = {(bool(stored[u]["deleted_ms"]), stored[u]["deletion_id"]) for u in call}
            assert len(states) == 1, f"call {call} split across orders: {states}"
            deleted, deletion_id = states.pop()
            if deleted:  # add, then delete
                # (while the session stays deleted, with its token: restoreSession brings them
                # back; once another call revived it, that deletion can no longer be restored)
                assert deletion_id == token or not session["deleted_ms"]
                orders["add-then-delete"] += 1
            else:  # delete, then add: the add revived the session
                assert not session["deleted_ms"]
                orders["delete-then-add"] += 1
        if session["deleted_ms"]:
            assert session["deletion_id"] == token
            restored = await gql.ok(RESTORE_SESSION, {"id": sid})
            assert restored["restoreSession"]["memoryCount"] == 3 + 3 * adders
            await check_session(db, sid, [pre, *calls])
    print(f"orders seen: {dict(orders)}")


async def seed_session(gql: GraphQLClient, sid: str) -> list[str]:
    pre = [f"{sid}-pre{i}" for i in range(3)]
    await gql.ok(
        ADD_MEMORIES_BRIEF,
        {"input": {"sessionId": sid, "memories": tagged_memories(list(pre), "pre")}},
    )
    return pre


async def test_lagging_deletion_cascade_spares_the_revived_sessions_memories(
    gql: GraphQLClient, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deleteSession marks the session, then its memories: an addMemories that revives the session
    in between keeps its memories live (they come after the deletion), and the count stays right."""
    pre = await seed_session(gql, "s1")
    cascade = Hold(monkeypatch, "update_many", deletion_cascade_of("s1"))
    later = ["b0", "b1", "b2"]
    add_later = {"input": {"sessionId": "s1", "memories": tagged_memories(list(later), "b")}}

    await asyncio.gather(
        gql.ok(DELETE_SESSION, {"id": "s1"}),  # marks the session, then waits at its cascade
        once(cascade.reached, then_set(cascade.release, gql.ok(ADD_MEMORIES_BRIEF, add_later))),
    )

    assert cascade.done.is_set()
    stored = await check_session(db, "s1", [pre, later])
    assert all(stored[u]["deleted_ms"] for u in pre)
    assert not any(stored[u]["deleted_ms"] for u in later)
    session = (await gql.ok(READ_SESSION, {"id": "s1"}))["session"]
    assert session["memoryCount"] == 3
    assert [n["uuid"] for n in session["memories"]["nodes"]] == later


async def test_add_straddling_a_deletion_and_a_revival_is_not_counted(
    gql: GraphQLClient, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stores its memories; the session is deleted (its cascade held back) and revived by B;
    only then does A count its memories. A's memories went with the deletion (A, then delete,
    then B): they must be deleted and not counted into the revived session."""
    pre = await seed_session(gql, "s1")
    count_a = Hold(monkeypatch, "find_one_and_update", memory_count_increment)
    cascade = Hold(monkeypatch, "update_many", deletion_cascade_of("s1"))
    first, later = ["a0", "a1", "a2"], ["b0", "b1", "b2"]
    add_first = {"input": {"sessionId": "s1", "memories": tagged_memories(list(first), "a")}}
    add_later = {"input": {"sessionId": "s1", "memories": tagged_memories(list(later), "b")}}

    async def cascade_then_count() -> None:
        await asyncio.wait_for(cascade.done.wait(), 30)
        count_a.release.set()

    await asyncio.gather(
        gql.ok(ADD_MEMORIES_BRIEF, add_first),  # stores, then waits at its count
        once(count_a.reached, gql.ok(DELETE_SESSION, {"id": "s1"})),  # waits at its cascade
        once(cascade.reached, then_set(cascade.release, gql.ok(ADD_MEMORIES_BRIEF, add_later))),
        cascade_then_count(),
    )

    stored = await check_session(db, "s1", [pre, first, later])
    assert all(stored[u]["deleted_ms"] for u in pre + first)
    assert not any(stored[u]["deleted_ms"] for u in later)
    session = (await gql.ok(READ_SESSION, {"id": "s1"}))["session"]
    assert session["memoryCount"] == 3
    assert [n["uuid"] for n in session["memories"]["nodes"]] == later


async def test_a_deletion_between_reservation_and_insert_takes_the_memories(
    gql: GraphQLClient, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reserves its numbers (the session is live), then the whole deletion runs, cascade
    included, before A inserts: A's memories were numbered before the deletion, so they go with
    it, marked with its token (restoreSession brings them back), and are not counted."""
    pre = await seed_session(gql, "s1")
    insert_a = Hold(monkeypatch, "insert_many", lambda name, docs, *rest: docs[0]["uuid"] == "a0")
    first = ["a0", "a1", "a2"]
    add_first = {"input": {"sessionId": "s1", "memories": tagged_memories(list(first), "a")}}

    await asyncio.gather(
        gql.ok(ADD_MEMORIES_BRIEF, add_first),  # reserves, then waits at its insert
        once(insert_a.reached, then_set(insert_a.release, gql.ok(DELETE_SESSION, {"id": "s1"}))),
    )

    assert insert_a.done.is_set()
    stored = await check_session(db, "s1", [pre, first])
    assert all(stored[u]["deleted_ms"] for u in pre + first)
    assert len({stored[u]["deletion_id"] for u in pre + first}) == 1
    restored = await gql.ok(RESTORE_SESSION, {"id": "s1"})
    assert restored["restoreSession"]["memoryCount"] == 6
    await check_session(db, "s1", [pre, first])


def release_of_numbers(
    name: str, query: dict[str, Any], update: dict[str, Any], *rest: Any
) -> bool:
    """The update that gives back the unused end of an addMemories call's reservation."""
    return name == "sessions" and update.get("$inc", {}).get("next_seq", 0) < 0


async def test_numbers_are_not_given_back_past_a_deletion(
    gql: GraphQLClient, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry reserves numbers it will not use; before it gives them back the session is
    deleted (cascade held back) and revived by B. Giving them back then would hand B numbers
    that the lagging cascade (every memory numbered up to the deletion) takes: they stay used."""
    pre = await seed_session(gql, "s1")
    give_back = Hold(monkeypatch, "update_one", release_of_numbers)
    cascade = Hold(monkeypatch, "update_many", deletion_cascade_of("s1"))
    later = ["b0", "b1", "b2"]
    retry = {"input": {"sessionId": "s1", "memories": tagged_memories(list(pre), "pre")}}
    add_later = {"input": {"sessionId": "s1", "memories": tagged_memories(list(later), "b")}}

    async def delete_then_give_back() -> None:
        await gql.ok(DELETE_SESSION, {"id": "s1"})  # waits at its cascade until B is done

    async def revive_then_cascade() -> None:
        await asyncio.wait_for(give_back.done.wait(), 30)
        await gql.ok(ADD_MEMORIES_BRIEF, add_later)
        cascade.release.set()

    await asyncio.gather(
        gql.ok(ADD_MEMORIES_BRIEF, retry),  # learns its memories are stored, waits to give back
        once(give_back.reached, delete_then_give_back()),
        once(cascade.reached, then_set(give_back.release, asyncio.sleep(0))),
        revive_then_cascade(),
    )

    stored = await check_session(db, "s1", [pre, later])
    assert all(stored[u]["deleted_ms"] for u in pre)
    assert not any(stored[u]["deleted_ms"] for u in later)
    session = (await gql.ok(READ_SESSION, {"id": "s1"}))["session"]
    assert session["memoryCount"] == 3
    assert [n["uuid"] for n in session["memories"]["nodes"]] == later


# ---------------------------------------------------------------------------------------------
# Over TCP: real server processes


async def post_ok(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data


@pytest.mark.slow
async def test_two_server_processes_fifty_concurrent_add_memories_over_tcp(
    gql: GraphQLClient, db: Db, mongo_uri: str, tmp_path: Path
) -> None:
    """Two API processes on one database, eight client connections each, 50 racing calls with
    retries: the database-level guarantees hold across processes, not just inside one."""
    env = serve_environment(
        tmp_path / "data", quiet=True, MEMVAULT_MONGODB_URI=mongo_uri, MEMVAULT_DATABASE=db.name
    )
    apps = (LiveServer(env, tmp_path, "a"), LiveServer(env, tmp_path, "b"))
    plans = [fifty_calls(f"tcp{n}", seed=600 + n) for n in range(2)]
    async with serving(*apps):
        clients = [
            httpx.AsyncClient(
                base_url=apps[i % 2].url, timeout=60, limits=httpx.Limits(max_connections=4)
            )
            for i in range(8)
        ]
        try:
            jobs = [
                post_ok(
                    clients[(n * 50 + i) % len(clients)],
                    ADD_MEMORIES_BRIEF,
                    {"input": {"sessionId": plan.session_id, "memories": call}},
                )
                for n, plan in enumerate(plans)
                for i, call in enumerate(plan.calls)
            ]
            results = await asyncio.gather(*jobs)
        finally:
            for client in clients:
                await client.aclose()
        for app in apps:
            assert "Traceback" not in app.log, app.log
    for n, plan in enumerate(plans):
        payloads = [r["addMemories"] for r in results[n * 50 : (n + 1) * 50]]
        await check_plan_stored(db, gql, plan, check_payloads(plan, payloads))
