"""A bounded load test (issue 6): 32 clients over loopback for a fixed time, mixed reads and
writes, zero errors, and zero lost or duplicated memories, checked in the database afterwards.

It runs in the default test command (CI). ``MEMVAULT_LOAD_SECONDS`` sets the duration (default
60); the number of requests is bounded too (``MAX_REQUESTS``). The server is a real ``memvault
serve`` process on 127.0.0.1, on the suite's database server with a database of this test's own.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.documents import ADD_MEMORIES_BRIEF, check_session
from tests.support.server import LiveServer, serve_environment, serving

Db = AsyncDatabase[dict[str, Any]]

CLIENTS = 32
SECONDS = float(os.environ.get("MEMVAULT_LOAD_SECONDS") or 60)
MAX_REQUESTS = 200_000  # a hard bound whatever the duration
USERS = 16
SESSIONS = 64  # shared by all clients: writers race on every session

WINDOW = """query($id: String!) {
  session(sessionId: $id) {
    memoryCount
    memories(last: 10) { pageInfo { hasPreviousPage startCursor } nodes { uuid seq } }
  }
}"""
NESTED = """query($id: String!) {
  user(userId: $id) {
    sessions(first: 10) {
      totalCount
      nodes { sessionId memoryCount memories(last: 5) { nodes { uuid seq content } } }
    }
  }
}"""
LIST = """query($user: String, $after: String) {
  sessions(first: 10, after: $after, filter: {userId: $user}) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { sessionId memoryCount }
  }
}"""
PAGE_BACK = """query($id: String!, $before: String) {
  session(sessionId: $id) { memories(last: 20, before: $before) { nodes { seq } } }
}"""


def user_of(session: int) -> str:
    return f"lu{session % USERS}"


@dataclass
class Call:
    """One acknowledged addMemories: its input and the seqs it was answered with."""

    session_id: str
    memories: list[dict[str, Any]]
    seqs: list[int]

    @property
    def uuids(self) -> list[str]:
        return [m["uuid"] for m in self.memories]


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    retries: int = 0
    requests: int = 0

    def summary(self, elapsed: float) -> str:
        every = sorted(itertools.chain.from_iterable(self.latencies.values()))

        def pct(values: list[float], q: float) -> float:
            return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0

        lines = [
            f"load: {CLIENTS} clients, {elapsed:.1f}s, {self.requests} requests, "
            f"{self.requests / elapsed:.0f} req/s, p50 {pct(every, 0.5):.1f} ms, "
            f"p99 {pct(every, 0.99):.1f} ms, errors {len(self.errors)}, "
            f"acknowledged calls {len(self.calls)} (+{self.retries} retries)"
        ]
        for kind, values in sorted(self.latencies.items()):
            values.sort()
            lines.append(
                f"  {kind:<8} {len(values):>6}  p50 {pct(values, 0.5):6.1f} ms  "
                f"p99 {pct(values, 0.99):6.1f} ms  mean {statistics.fmean(values) * 1000:6.1f} ms"
            )
        return "\n".join(lines)


class Client:
    """One of the 32 clients: its own connection, its own seeded mix of operations."""

    def __init__(self, index: int, base: str, stats: Stats, deadline: float) -> None:
        self.index = index
        self.rng = random.Random(6000 + index)
        self.base = base
        self.stats = stats
        self.deadline = deadline
        self.mine: list[Call] = []

    async def post(self, kind: str, query: str, variables: dict[str, Any]) -> dict[str, Any] | None:
        started = time.monotonic()
        self.stats.requests += 1
        try:
            response = await self.http.post(
                "/graphql", json={"query": query, "variables": variables}
            )
        except httpx.HTTPError as exc:
            self.stats.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        self.stats.latencies[kind].append(time.monotonic() - started)
        body = response.json() if response.status_code == 200 else {}
        if response.status_code != 200 or body.get("errors"):
            self.stats.errors.append(f"{kind}: HTTP {response.status_code} {response.text[:300]}")
            return None
        data: dict[str, Any] = body["data"]
        return data

    async def add(self, n: int) -> None:
        session = self.rng.randrange(SESSIONS)
        memories = [
            {
                "uuid": f"c{self.index}-{n}-{i}",
                "roleType": self.rng.choice(["USER", "ASSISTANT"]),
                "content": f"client {self.index} call {n} message {i} "
                + "x" * self.rng.randrange(200),
                "metadata": {"client": self.index, "n": n},
            }
            for i in range(self.rng.randint(1, 5))
        ]
        data: dict[str, Any] = {
            "sessionId": f"ls{session}",
            "userId": user_of(session),
            "memories": memories,
        }
        answer = await self.post("add", ADD_MEMORIES_BRIEF, {"input": data})
        if answer is None:
            return
        got = answer["addMemories"]["memories"]
        seqs = [m["seq"] for m in got]
        if [m["uuid"] for m in got] != [m["uuid"] for m in memories] or seqs != sorted(set(seqs)):
            self.stats.errors.append(f"add answered out of order: {got}")
            return
        call = Call(data["sessionId"], memories, seqs)
        self.mine.append(call)
        self.stats.calls.append(call)

    async def retry(self) -> None:
        call = self.rng.choice(self.mine)
        data = {"sessionId": call.session_id, "memories": call.memories}
        answer = await self.post("retry", ADD_MEMORIES_BRIEF, {"input": data})
        if answer is None:
            return
        got = answer["addMemories"]["memories"]
        if [(m["uuid"], m["seq"]) for m in got] != list(zip(call.uuids, call.seqs, strict=True)):
            self.stats.errors.append(f"retry of {call.uuids} answered {got}, not {call.seqs}")
        self.stats.retries += 1

    async def window(self) -> None:
        """The recent window, then the page before it: both in seq order, the older page below."""
        sid = f"ls{self.rng.randrange(SESSIONS)}"
        answer = await self.post("window", WINDOW, {"id": sid})
        session = (answer or {}).get("session")
        if not session:
            return
        page = session["memories"]
        seqs = [m["seq"] for m in page["nodes"]]
        if seqs != sorted(set(seqs)) or len(seqs) > 10:
            self.stats.errors.append(f"window out of order: {seqs}")
        if not page["pageInfo"]["hasPreviousPage"]:
            return
        variables = {"id": sid, "before": page["pageInfo"]["startCursor"]}
        older = await self.post("page", PAGE_BACK, variables)
        if older and older["session"]:
            before = [m["seq"] for m in older["session"]["memories"]["nodes"]]
            if not before or before != sorted(set(before)) or before[-1] >= seqs[0]:
                self.stats.errors.append(f"page before {seqs} is {before}")

    async def nested(self) -> None:
        await self.post("nested", NESTED, {"id": f"lu{self.rng.randrange(USERS)}"})

    async def listing(self) -> None:
        after = None
        for _ in range(2):  # two pages
            answer = await self.post(
                "list", LIST, {"user": f"lu{self.rng.randrange(USERS)}", "after": after}
            )
            if answer is None:
                return
            info = answer["sessions"]["pageInfo"]
            if not info["hasNextPage"]:
                return
            after = info["endCursor"]

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
            self.http = http
            for n in itertools.count():
                if time.monotonic() >= self.deadline or self.stats.requests >= MAX_REQUESTS:
                    return
                roll = self.rng.random()
                if roll < 0.35 or not self.mine:
                    await self.add(n)
                elif roll < 0.45:
                    await self.retry()
                elif roll < 0.70:
                    await self.window()
                elif roll < 0.85:
                    await self.nested()
                else:
                    await self.listing()

    http: httpx.AsyncClient


@pytest.mark.load
@pytest.mark.slow
async def test_load_32_clients_mixed_reads_and_writes_lose_and_duplicate_nothing(
    db: Db, mongo_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = serve_environment(
        tmp_path / "data", quiet=True, MEMVAULT_MONGODB_URI=mongo_uri, MEMVAULT_DATABASE=db.name
    )
    server = LiveServer(env, tmp_path)
    stats = Stats()
    async with serving(server):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as setup:
            for u in range(USERS):
                response = await setup.post(
                    "/graphql",
                    json={
                        "query": f'mutation {{ createUser(input: {{userId: "lu{u}"}}) {{ userId }} }}'
                    },
                )
                assert response.status_code == 200, response.text
                assert not response.json().get("errors"), response.text
        started = time.monotonic()
        clients = [Client(i, server.url, stats, started + SECONDS) for i in range(CLIENTS)]
        await asyncio.gather(*(client.run() for client in clients))
        elapsed = time.monotonic() - started
        log = server.log
    with capsys.disabled():
        print("\n" + stats.summary(elapsed))

    assert not stats.errors, stats.errors[:10]
    assert "Traceback" not in log, log[-5000:]
    assert stats.requests <= MAX_REQUESTS + CLIENTS
    assert len(stats.calls) > 0

    # Every acknowledged memory is stored exactly once, where and as it was acknowledged, in
    # each call's order; nothing else is stored; every session's count is right.
    by_session: dict[str, list[Call]] = defaultdict(list)
    for call in stats.calls:
        by_session[call.session_id].append(call)
    stored_total = 0
    for session_id, calls in by_session.items():
        stored = await check_session(db, session_id, [c.uuids for c in calls])
        assert set(stored) == {u for c in calls for u in c.uuids}
        for call in calls:
            assert [stored[u]["seq"] for u in call.uuids] == call.seqs
            for memory in call.memories:
                doc = stored[memory["uuid"]]
                assert doc["content"] == memory["content"]
                assert doc["deleted_ms"] == 0
        stored_total += len(stored)
    assert await db["memories"].count_documents({}) == stored_total
    assert stored_total == len({u for c in stats.calls for u in c.uuids})
