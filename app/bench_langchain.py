"""``memvault bench --compare-langchain``: LangChain's ``MongoDBChatMessageHistory`` beside
memvault, on the same database engine, in the same run.

LangChain's history runs in the bench's process, as an application would run it: a synchronous
PyMongo client, one document per message (``SessionId``, and ``History``: the message as a JSON
string), an index on ``SessionId``. memvault answers over HTTP from its ``memvault serve``
process. Each comparison alternates the sides in rounds, as the bench does with its floors, so
drift on a shared machine moves both alike. The package is the ``langchain`` extra, imported only
here and only when asked for.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

from memvault.bench import (
    BOT_MESSAGE,
    MEASURE_ROUNDS,
    WINDOW_QUERY,
    fill_message,
    percentile,
    timed_loop,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx
    from langchain_mongodb.chat_message_histories import MongoDBChatMessageHistory

    from memvault.bench import Bench, Server

INSTALL = "pip install 'memvault[langchain]'"
COLLECTION = "langchain_message_store"
WINDOW = 20
WINDOW_SIZES = (100, 1_000, 10_000)  # messages in a session, unless --growth gives others
STORAGE = "one document per message: {SessionId, History: the message as a JSON string}"
COUNT_QUERY = "query($id: String!) { session(sessionId: $id) { memoryCount } }"


class LangChainMissing(RuntimeError):
    """LangChain's MongoDB integration is not installed (the ``langchain`` extra)."""


def history_class() -> type[MongoDBChatMessageHistory]:
    """LangChain's MongoDB chat history class; ``LangChainMissing`` (one line) without it."""
    try:
        from langchain_mongodb.chat_message_histories import MongoDBChatMessageHistory
    except ImportError as exc:
        raise LangChainMissing(
            f"--compare-langchain needs langchain-mongodb ({exc}): {INSTALL}"
        ) from None
    return MongoDBChatMessageHistory


def has_history_size() -> bool:
    """Whether the installed release reads only the last N messages (``history_size``)."""
    return "history_size" in inspect.signature(history_class()).parameters


@dataclass
class Side:
    """One side's samples over the rounds of a comparison."""

    latencies: list[float] = field(default_factory=list)  # ms, successes only
    errors: int = 0
    wall: float = 0.0  # s
    first_error: str | None = None

    def add(self, latencies: list[float], errors: int, wall: float) -> None:
        self.latencies += latencies
        self.errors += errors
        self.wall += wall

    def run_threads(self, call: Callable[[], object], *, duration: float, threads: int) -> None:
        """Run the synchronous ``call`` from ``threads`` threads for ``duration`` s and add the
        latencies of its successes, its errors and the wall time."""
        lock = threading.Lock()
        deadline = time.perf_counter() + duration

        def worker() -> None:
            mine: list[float] = []
            failed = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    call()
                except Exception as exc:
                    failed += 1
                    self.first_error = self.first_error or repr(exc)
                    continue
                mine.append((time.perf_counter() - t0) * 1000)
            with lock:
                self.latencies += mine
                self.errors += failed

        started = time.perf_counter()
        if threads == 1:
            worker()
        else:
            workers = [threading.Thread(target=worker) for _ in range(threads)]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
        self.wall += time.perf_counter() - started

    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "requests": len(self.latencies) + self.errors,
            "errors": self.errors,
            "per_s": round(len(self.latencies) / self.wall, 1) if self.wall else 0.0,
            "p50_ms": round(percentile(self.latencies, 0.5), 3),
            "p99_ms": round(percentile(self.latencies, 0.99), 3),
        }
        if self.first_error:
            figures["first_error"] = self.first_error
        return figures


def ratio(ours: float, theirs: float) -> float:
    """``ours / theirs`` to four significant digits (the sides can differ a thousandfold)."""
    return float(f"{ours / theirs:.4g}") if theirs else 0.0


class Comparison:
    """The comparisons of one run; every LangChain history shares the first one's client."""

    def __init__(self, bench: Bench, server: Server, http: httpx.AsyncClient) -> None:
        self.bench = bench
        self.server = server
        self.http = http
        self.history_type = history_class()
        self.client: Any = None  # the sync PyMongo client LangChain made

    def history(self, session_id: str, **options: Any) -> MongoDBChatMessageHistory:
        if self.client is None:
            first = self.history_type(
                self.bench.mongodb_uri,
                session_id,
                database_name=self.bench.database,
                collection_name=COLLECTION,
                **options,
            )
            self.client = first.client
            return first
        return self.history_type(
            None,
            session_id,
            database_name=self.bench.database,
            collection_name=COLLECTION,
            client=self.client,
            **options,
        )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    async def alternate(
        self,
        name: str,
        memvault: Callable[[], Awaitable[bool]],
        langchain: dict[str, Callable[[], object]],
        *,
        clients: int = 1,
    ) -> dict[str, Any]:
        """memvault's call and each LangChain call in turn, ``MEASURE_ROUNDS`` rounds, each side
        for the same time per round, from ``clients`` clients (LangChain: threads)."""
        bench = self.bench
        for _ in range(5):  # warm caches and connections on every side
            await memvault()
            for call in langchain.values():
                await asyncio.to_thread(call)
        ours = Side()
        theirs = {key: Side() for key in langchain}
        commands = 0
        share = bench.duration / MEASURE_ROUNDS
        for round_number in range(1, MEASURE_ROUNDS + 1):
            bench.progress.say(f"{name}: measuring, round {round_number} of {MEASURE_ROUNDS}")
            bench.first_error = None
            before = await self.server.commands(self.http)
            ours.add(*await timed_loop(memvault, duration=share, concurrency=clients))
            commands += await self.server.commands(self.http) - before
            ours.first_error = ours.first_error or bench.first_error
            for key, call in langchain.items():
                await asyncio.to_thread(
                    theirs[key].run_threads, call, duration=share, threads=clients
                )
        mine = ours.figures()
        mine["db_commands_per_request"] = round(commands / max(mine["requests"], 1), 2)
        section: dict[str, Any] = {"clients": clients, "memvault": mine}
        for key, side in theirs.items():
            figures = section[key] = side.figures()
            suffix = key.removeprefix("langchain")
            section[f"ratio_p50{suffix}"] = ratio(mine["p50_ms"], figures["p50_ms"])
            section[f"ratio_per_s{suffix}"] = ratio(mine["per_s"], figures["per_s"])
        return section

    async def memory_count(self, session_id: str) -> int | None:
        data = await self.bench.graphql(self.http, self.server, COUNT_QUERY, {"id": session_id})
        return data["session"]["memoryCount"] if data and data["session"] else None

    async def stored(self, session_id: str) -> int:
        """Messages LangChain's side holds for ``session_id``, counted in the database."""
        count: int = await self.bench.db[COLLECTION].count_documents({"SessionId": session_id})
        return count

    async def add_message(self, clients: int) -> dict[str, Any]:
        from langchain_core.messages import HumanMessage

        session_id = f"compare-write-{clients}"
        await self.bench.fill(session_id, 1)  # addMemories writes to a live session
        history = self.history(session_id)
        message = HumanMessage(content=BOT_MESSAGE)
        write = self.bench.write_call(self.server, self.http, session_id)
        written = {"memvault": 1, "langchain": 0}  # every success, warm-up included
        lock = threading.Lock()

        async def ours() -> bool:
            ok = await write()
            written["memvault"] += ok
            return ok

        def theirs() -> None:
            history.add_message(message)
            with lock:
                written["langchain"] += 1

        section = await self.alternate(
            f"add_message, {clients} client(s)", ours, {"langchain": theirs}, clients=clients
        )
        # LangChain logs a write error and returns: only the database tells what was kept.
        section["written"] = written
        section["stored"] = {
            "memvault": await self.memory_count(session_id),
            "langchain": await self.stored(session_id),
        }
        return section

    async def window(self, size: int, with_history_size: bool) -> dict[str, Any]:
        from langchain_core.messages import AIMessage, HumanMessage

        session_id = f"compare-window-{size}"
        self.bench.progress.say(f"langchain window: filling two sessions of {size} messages")
        await self.bench.fill(session_id, size)
        history = self.history(session_id)
        messages = []
        for n in range(size):
            role_type, content = fill_message(session_id, n)
            kind = HumanMessage if role_type == "user" else AIMessage
            messages.append(kind(content=content))
        await asyncio.to_thread(history.add_messages, messages)

        def last_20() -> list[Any]:
            return history.messages[-WINDOW:]

        reads: dict[str, Callable[[], list[Any]]] = {"langchain": last_20}
        if with_history_size:
            recent = self.history(session_id, history_size=WINDOW)
            reads["langchain_history_size"] = lambda: recent.messages
        # Both sides must answer the same messages, in the same order.
        data = await self.bench.graphql(self.http, self.server, WINDOW_QUERY, {"id": session_id})
        answers = [
            [node["content"] for node in data["session"]["memories"]["nodes"]] if data else None
        ]
        for read in reads.values():
            answers.append([message.content for message in await asyncio.to_thread(read)])
        section = await self.alternate(
            f"langchain window at {size}",
            self.bench.window_call(self.server, self.http, session_id),
            dict(reads),
        )
        section["messages"] = size
        # LangChain's history_size read counts the session's messages: what that costs can
        # depend on the whole collection (on the embedded engine it scans it).
        section["collection_messages"] = await self.bench.db[COLLECTION].estimated_document_count()
        section["same_messages"] = all(answer == answers[0] for answer in answers)
        section["stored"] = {
            "memvault": await self.memory_count(session_id),
            "langchain": await self.stored(session_id),
        }
        return section


async def compare(
    bench: Bench, server: Server, http: httpx.AsyncClient, *, window_sizes: list[int]
) -> dict[str, Any]:
    """The report's ``langchain`` section: add_message (sequential, and from the bench's
    concurrency) and the last-20 window at each size, both sides with their ratio."""
    comparison = Comparison(bench, server, http)
    with_history_size = has_history_size()
    try:
        section: dict[str, Any] = {
            "engine": await bench.engine_name(),
            "versions": {
                name: metadata.version(name) for name in ("langchain-mongodb", "langchain-core")
            },
            "storage": STORAGE,
            "ratios": "memvault / LangChain",
            # The windows first: the collection then holds only their sessions' messages.
            "window": [
                await comparison.window(size, with_history_size)
                for size in (window_sizes or WINDOW_SIZES)
            ],
            "add_message": await comparison.add_message(1),
        }
        if bench.concurrency > 1:
            section["add_message_concurrent"] = await comparison.add_message(bench.concurrency)
    finally:
        comparison.close()
    return section


COLUMNS = (("per_s", 9, ".1f"), ("p50_ms", 9, ".2f"), ("p99_ms", 9, ".2f"))


def render(section: dict[str, Any]) -> list[str]:
    """The ``langchain`` section for people: one row per comparison, memvault's figures, then
    LangChain's, then the ratios (memvault / LangChain)."""
    versions = ", ".join(f"{name} {version}" for name, version in section["versions"].items())
    names = "".join(f"{name.replace('_ms', ' ms').replace('_', ' '):>{width}}"
                    for name, width, _ in COLUMNS)  # fmt: skip
    header = f"{'':<34}{names}{names}{'p50':>10}{'per s':>10}"
    groups = f"{'':<34}{'memvault':>27}{'LangChain':>27}{'ratio ' + section['ratios']:>28}"

    def row(label: str, entry: dict[str, Any], key: str) -> str:
        suffix = key.removeprefix("langchain")
        cells = "".join(
            f"{side[name]:>{width}{fmt}}"
            for side in (entry["memvault"], entry[key])
            for name, width, fmt in COLUMNS
        )
        ratios = f"{entry['ratio_p50' + suffix]:>10.3g}{entry['ratio_per_s' + suffix]:>10.3g}"
        return f"{label:<34}{cells}{ratios}"

    lines = [
        f"LangChain's MongoDBChatMessageHistory ({versions}) in process beside memvault over"
        f" HTTP, {section['engine']};",
        f"LangChain stores {section['storage']}.",
        groups,
        header,
        "-" * len(groups),
    ]
    for key in ("add_message", "add_message_concurrent"):
        if entry := section.get(key):
            lines.append(row(f"add_message, {entry['clients']} client(s)", entry, "langchain"))
    for entry in section["window"]:
        size = entry["messages"]
        lines.append(row(f"last 20 of {size}, messages[-20:]", entry, "langchain"))
        if "langchain_history_size" in entry:
            lines.append(
                row(f"last 20 of {size}, history_size=20", entry, "langchain_history_size")
            )
    if any("langchain_history_size" in entry for entry in section["window"]):
        held = " / ".join(str(entry["collection_messages"]) for entry in section["window"])
        lines.append(
            "history_size=20: LangChain counts the session's messages (count_documents), then"
            f" reads past the rest (skip); its collection held {held} messages"
        )
    return lines
