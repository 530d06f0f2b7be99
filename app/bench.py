"""``memvault bench``: request cost over HTTP against the database's own floor, in one run.

The API runs as a real ``memvault serve`` process; the bench seeds its own dataset through the
data layer, then measures each scenario over HTTP (latency, throughput, database commands per
request from the server's ``/metrics``, and the server process's own CPU time per request) and,
beside it, the floor: the same data read or written with minimal PyMongo calls and serialised to
JSON. Ratios are computed within the run, so a noisy machine skews both sides alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from memvault.bench_live import LiveSizes, SubscribeScenario
from memvault.db import memories as memory_repo
from memvault.db import users as user_repo
from memvault.db.engine import EmbeddedEngine, connect, free_port
from memvault.db.indexes import ensure_indexes
from memvault.db.memories import NewMemory
from memvault.db.queries import Window, union_pipeline

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

PROJECT = "default"
BOT_MESSAGE = "a new message from a bench bot"
SERVER_START_TIMEOUT_S = 60
MEASURE_ROUNDS = 5  # a scenario alternates with its floor this many times
WINDOW_QUERY = """query($id: String!) { session(sessionId: $id) {
  memories(last: 20) { nodes { role content createdAt } } } }"""
NESTED_QUERY = """{ users(first: 10) { nodes { sessions(first: 10) { nodes {
  memories(last: 10) { nodes { content } } } } } } }"""
LISTING_QUERY = """query($after: String) { sessions(first: 100, after: $after) {
  nodes { sessionId } pageInfo { hasNextPage endCursor } } }"""
SEARCH_CASES = ("search_rare", "search_common", "search_phrase", "search_user")
SCENARIOS = (
    "write", "write_concurrent", "window", "nested", "listing", *SEARCH_CASES, "subscribe"
)  # fmt: skip
SEARCH_QUERY = """query($q: String!, $filter: MemorySearchFilter) {
  searchMemories(query: $q, filter: $filter, first: 20) {
    edges { score node { uuid content createdAt } } pageInfo { hasNextPage } } }"""
# The search corpus: every memory holds three of the common words and a dozen of the others;
# RARE_WORD is in one memory in 20,000.
COMMON_WORDS = ("hello", "thanks", "please", "order", "address", "weather", "today", "help",
                "price", "time")  # fmt: skip
RARE_WORD = "zanzibar"
SEARCH_TEXT = {
    "search_rare": RARE_WORD,
    "search_common": "hello thanks",
    "search_phrase": '"hello thanks"',
    "search_user": "hello thanks",
}
# The same searches as $text strings: each word quoted, so that all must match (as the API does)
FLOOR_SEARCH = {
    "search_rare": f'"{RARE_WORD}"',
    "search_common": '"hello" "thanks"',
    "search_phrase": '"hello thanks"',
    "search_user": '"hello" "thanks"',
}
SEARCH_USERS = 50
SEARCH_SESSIONS_PER_USER = 10
SEARCHED_USER = "searcher-07"
WRITE_QUERY = """mutation($input: AddMemoriesInput!) { addMemories(input: $input) {
  memories { uuid seq } } }"""


@dataclass
class Sizes:
    users: int = 10
    sessions_per_user: int = 10
    memories_per_session: int = 20
    search_memories: int = 100_000  # the search corpus (SEARCH_CASES)


@dataclass
class Result:
    """One scenario's figures (all times in milliseconds)."""

    requests: int = 0
    errors: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    db_commands_per_request: float = 0.0
    cpu_ms_per_request: float = 0.0
    floor_p50_ms: float = 0.0
    ratio_p50: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (Linux ``/proc``), children excluded."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class ServeError(RuntimeError):
    """A ``memvault serve`` process that did not come up."""


class ServeProcess:
    """``memvault serve`` in a subprocess on a free loopback port, run in ``workdir`` with
    exactly ``env``; its output (stdout and stderr) goes to a log file in ``workdir``.

    The bench measures the API through it; the test suite's live servers build on it.
    """

    def __init__(self, env: Mapping[str, str], workdir: Path, name: str = "serve") -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "memvault", "serve", "--port", str(self.port)],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def pid(self) -> int:
        return self._started().pid

    @property
    def log(self) -> str:
        """What the process has written so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        """Return once ``/readyz`` answers 200; ``ServeError`` (with the end of the log) if the
        process exits first or does not get ready within ``timeout`` seconds."""
        process = self._started()
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    code = process.returncode
                    raise ServeError(f"memvault serve exited with {code}:{self._tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/readyz").status_code == 200:
                        return
                time.sleep(0.1)
        raise ServeError(f"memvault serve not ready within {timeout:g} s:{self._tail()}")

    def stop(
        self, stop_signal: signal.Signals = signal.SIGTERM, timeout: float = 30.0
    ) -> int | None:
        """Send ``stop_signal`` (unless it has exited) and return the exit code; None if it did
        not exit within ``timeout`` seconds (it is killed then)."""
        process = self._started()
        if process.poll() is None:
            process.send_signal(stop_signal)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            return None

    def _tail(self) -> str:
        return "\n" + self.log[-4000:]

    def _started(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise ServeError("memvault serve was not started")
        return self.process


class Server(ServeProcess):
    """The API under measurement, on the bench's database, with a wire client of its own."""

    def __init__(self, mongodb_uri: str, database: str) -> None:
        env = {
            **os.environ,
            "MEMVAULT_MONGODB_URI": mongodb_uri,
            "MEMVAULT_DATABASE": database,
            "MEMVAULT_LOG_LEVEL": "WARNING",
            "MEMVAULT_PURGE_INTERVAL": "0",
            "MEMVAULT_AUTH": "open",
        }
        self.tmp = tempfile.TemporaryDirectory(prefix="memvault-bench-")
        super().__init__(env, Path(self.tmp.name))
        self.wire = WireClient("127.0.0.1", self.port)

    async def commands(self, client: httpx.AsyncClient) -> int:
        """Database commands the server has sent so far (every command name together)."""
        text = (await client.get(f"{self.url}/metrics")).text
        return sum(
            int(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "memvault_db_command_duration_seconds_count"
        )

    def cpu(self) -> float:
        return process_cpu_seconds(self.pid)

    def close(self) -> None:
        self.wire.close()
        if self.process is not None:
            self.stop(timeout=15)
        self.tmp.cleanup()


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def say(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r\x1b[2K{text}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


async def timed_loop(
    call: Callable[[], Awaitable[bool]],
    *,
    duration: float,
    concurrency: int = 1,
    max_requests: int = 1_000_000,
) -> tuple[list[float], int, float]:
    """Run ``call`` from ``concurrency`` workers for ``duration`` s.

    Return the latencies of the successes (ms), the error count and the wall time (s)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
            t0 = time.perf_counter()
            ok = await call()
            elapsed = (time.perf_counter() - t0) * 1000
            if ok:
                latencies.append(elapsed)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


class WireClient:
    """A minimal HTTP/1.1 keep-alive client for the measured requests.

    The bench shares the machine with the server and the database; httpx spends about 1 ms of
    CPU per request of its own (measured beside this client on the window scenario), which
    would be counted as the server's latency. This client writes one request and reads the
    status, ``Content-Length`` and body, on a pool of kept-alive connections.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post_json(self, path: str, payload: bytes) -> tuple[int, bytes]:
        """(status, body) of one POST; raises OSError (or EOFError) when the connection fails.

        A kept-alive connection the server has closed meanwhile (uvicorn closes idle ones after
        5 s) is replaced: before use when its end is already seen, or when it answers nothing at
        all (the server never read the request), once.
        """
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof():
                try:
                    return await self._exchange(reader, writer, path, payload)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        raise
            writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self._exchange(reader, writer, path, payload)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, payload: bytes
    ) -> tuple[int, bytes]:
        try:
            writer.write(
                b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s"
                % (path.encode(), self.host.encode(), self.port, len(payload), payload)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise OSError(f"HTTP {status} without Content-Length")
            body = await reader.readexactly(length)
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError):
            writer.close()
            raise
        self._idle.append((reader, writer))
        return status, body

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class Bench:
    def __init__(
        self,
        *,
        mongodb_uri: str,
        duration: float,
        concurrency: int,
        sizes: Sizes,
        progress: Progress,
        live: LiveSizes | None = None,
        only: tuple[str, ...] = SCENARIOS,
        compare_langchain: bool = False,
    ) -> None:
        self.mongodb_uri = mongodb_uri
        self.duration = duration
        self.concurrency = concurrency
        self.sizes = sizes
        self.live = live or LiveSizes()
        self.only = only
        self.compare_langchain = compare_langchain
        self.progress = progress
        self.database = f"bench_{uuid.uuid4().hex[:8]}"
        self.client = connect(mongodb_uri, timeout_ms=5000)
        self.db = self.client[self.database]
        self.session_ids: list[str] = []
        self.first_error: str | None = None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.drop_database(self.database)
        await self.client.close()

    async def engine_name(self) -> str:
        info = await self.client.admin.command("buildInfo")
        if info.get("process") == "nx_27017":
            from importlib.metadata import version

            return f"nx-27017 {version('nx-27017')} (embedded)"
        return f"MongoDB {info.get('version', '?')}"

    async def seed(self) -> None:
        sizes = self.sizes
        info = await self.client.admin.command("buildInfo")
        await ensure_indexes(self.db, embedded=info.get("process") == "nx_27017")
        total = sizes.users * sizes.sessions_per_user
        for u in range(sizes.users):
            user_id = f"user-{u:04d}"
            await user_repo.create_user(
                self.db, project_id=PROJECT, user_id=user_id, fields={}, metadata={"n": u}
            )
            for s in range(sizes.sessions_per_user):
                session_id = f"{user_id}-s{s:03d}"
                await self.fill(session_id, sizes.memories_per_session, user_id=user_id)
                self.session_ids.append(session_id)
                self.progress.say(f"seeding sessions {len(self.session_ids)}/{total}")

    async def seed_search(self) -> None:
        """The search corpus: ``search_memories`` memories in the sessions of 50 users (see
        ``COMMON_WORDS``), written through the data layer as the API would."""
        per_session = max(
            1, self.sizes.search_memories // (SEARCH_USERS * SEARCH_SESSIONS_PER_USER)
        )
        words = random.Random(7)
        vocabulary = [f"w{n}" for n in range(5000)]
        written = 0
        for u in range(SEARCH_USERS):
            user_id = f"searcher-{u:02d}"
            await user_repo.create_user(
                self.db, project_id=PROJECT, user_id=user_id, fields={}, metadata={}
            )
            for s in range(SEARCH_SESSIONS_PER_USER):
                batch = []
                for i in range(written, written + per_session):
                    chosen = words.sample(COMMON_WORDS, 3) + words.choices(vocabulary, k=12)
                    if i % 20_000 == 7:
                        chosen.append(RARE_WORD)
                    batch.append(NewMemory(role_type="user", content=" ".join(chosen)))
                await memory_repo.add_memories(
                    self.db,
                    project_id=PROJECT,
                    session_id=f"{user_id}-s{s:02d}",
                    user_id=user_id,
                    memories=batch,
                )
                written += per_session
            self.progress.say(f"seeding the search corpus {written}/{self.sizes.search_memories}")

    async def fill(
        self, session_id: str, count: int, *, user_id: str | None = None, chunk: int = 1000
    ) -> None:
        written = 0
        while written < count:
            batch = []
            for n in range(written, min(count, written + chunk)):
                role_type, content = fill_message(session_id, n)
                batch.append(NewMemory(role_type=role_type, role="bench", content=content))
            await memory_repo.add_memories(
                self.db, project_id=PROJECT, session_id=session_id, user_id=user_id, memories=batch
            )
            written += len(batch)

    async def measure(
        self,
        name: str,
        server: Server,
        http: httpx.AsyncClient,
        call: Callable[[], Awaitable[bool]],
        floor: Callable[[], Awaitable[None]] | None,
        *,
        concurrency: int = 1,
        beside: Mapping[str, Callable[[], Awaitable[None]]] | None = None,
    ) -> Result:
        """Our figures and, in alternating rounds, the floor's: drift on a shared machine then
        moves both sides of the ratio alike. ``beside``: other reference points measured the same
        way, reported in ``extra`` (``<name>_p50_ms``, ``<name>_ratio_p50``)."""
        # the floor and the other reference points, each sampled after the scenario every round
        references = ({"floor": floor} if floor is not None else {}) | dict(beside or {})
        for _ in range(5):  # warm caches and connections on both sides
            await call()
            for reference in references.values():
                await reference()
        samples: dict[str, list[float]] = {key: [] for key in references}
        walls = dict.fromkeys(references, 0.0)
        self.first_error = None
        latencies: list[float] = []
        errors = commands = 0
        wall = 0.0
        cpu_per_request: list[float] = []  # per round: the median is reported
        rounds = MEASURE_ROUNDS if references else 1
        for round_number in range(1, rounds + 1):
            self.progress.say(f"{name}: measuring, round {round_number} of {rounds}")
            commands_before, cpu_before = await server.commands(http), server.cpu()
            round_latencies, round_errors, round_wall = await timed_loop(
                call, duration=self.duration / rounds, concurrency=concurrency
            )
            round_cpu = server.cpu() - cpu_before
            commands += await server.commands(http) - commands_before  # /metrics costs none
            round_requests = len(round_latencies) + round_errors
            cpu_per_request.append(round_cpu * 1000 / max(round_requests, 1))
            latencies += round_latencies
            errors += round_errors
            wall += round_wall
            for key, reference in references.items():
                taken, reference_wall = await self.floor_samples(
                    reference,
                    requests=max(20, min(round_requests, 2000)),
                    duration=self.duration / rounds,
                    concurrency=concurrency,
                )
                samples[key] += taken
                walls[key] += reference_wall
        requests = len(latencies) + errors
        result = Result(
            requests=requests,
            errors=errors,
            rps=round(requests / wall, 1) if wall else 0.0,
            p50_ms=round(percentile(latencies, 0.5), 3),
            p99_ms=round(percentile(latencies, 0.99), 3),
            db_commands_per_request=round(commands / max(requests, 1), 2),
            cpu_ms_per_request=round(statistics.median(cpu_per_request), 3),
        )
        if self.first_error:
            result.extra["first_error"] = self.first_error
        for key, taken in samples.items():
            p50 = round(statistics.median(taken), 3) if taken else 0.0
            ratio = round(result.p50_ms / p50, 2) if p50 else 0.0
            rps = round(len(taken) / walls[key], 1) if walls[key] else 0.0
            if key == "floor":
                result.floor_p50_ms, result.ratio_p50 = p50, ratio
            else:
                result.extra[f"{key}_p50_ms"] = p50
                result.extra[f"{key}_ratio_p50"] = ratio
            if concurrency > 1 and taken:  # a concurrent floor: its throughput too
                result.extra[f"{key}_rps"] = rps
        return result

    async def floor_samples(
        self,
        floor: Callable[[], Awaitable[None]],
        *,
        requests: int,
        duration: float,
        concurrency: int = 1,
    ) -> tuple[list[float], float]:
        """The floor's latencies (ms) and wall time (s), from as many clients as the scenario."""

        async def call() -> bool:
            await floor()
            return True

        samples, _, wall = await timed_loop(
            call, duration=duration, concurrency=concurrency, max_requests=requests
        )
        return samples, wall

    # --- scenarios -----------------------------------------------------------------------

    async def graphql(
        self, http: httpx.AsyncClient, server: Server, query: str, variables: dict[str, Any]
    ) -> dict[str, Any] | None:
        payload = json.dumps({"query": query, "variables": variables}).encode()
        try:
            status, raw = await server.wire.post_json("/graphql", payload)
        except (OSError, EOFError, ValueError) as exc:
            self.first_error = self.first_error or repr(exc)
            return None
        body: dict[str, Any] = json.loads(raw) if status == 200 else {}
        if status != 200 or body.get("errors"):
            self.first_error = self.first_error or f"{status} {raw[:300].decode(errors='replace')}"
            return None
        data: dict[str, Any] = body["data"]
        return data

    async def run(self, *, growth: list[int]) -> dict[str, Any]:
        self.progress.say("seeding")
        await self.seed()
        if set(SEARCH_CASES) & set(self.only):
            await self.seed_search()
        server = Server(self.mongodb_uri, self.database)
        langchain: dict[str, Any] | None = None
        limits = httpx.Limits(
            max_connections=self.concurrency + 4, max_keepalive_connections=self.concurrency + 4
        )
        try:
            async with httpx.AsyncClient(limits=limits, timeout=30) as http:
                await asyncio.to_thread(server.start().wait_ready)
                runs: dict[str, Callable[[], Awaitable[Result]]] = {
                    "write": lambda: self.scenario_write(server, http, concurrency=1),
                    "write_concurrent": lambda: self.scenario_write(
                        server, http, concurrency=self.concurrency
                    ),
                    "window": lambda: self.scenario_window(
                        server, http, self.session_ids[len(self.session_ids) // 2]
                    ),
                    "nested": lambda: self.scenario_nested(server, http),
                    "listing": lambda: self.scenario_listing(server, http),
                    **{
                        case: functools.partial(self.scenario_search, server, http, case)
                        for case in SEARCH_CASES
                    },
                }
                scenarios = {name: await run() for name, run in runs.items() if name in self.only}
                subscribe = (
                    await self.scenario_subscribe(server) if "subscribe" in self.only else None
                )
                growth_figures = [await self.scenario_growth(server, http, size) for size in growth]
                if self.compare_langchain:
                    from memvault.bench_langchain import compare

                    langchain = await compare(self, server, http, window_sizes=growth)
        finally:
            server.close()
        self.progress.done()
        report: dict[str, Any] = {
            "machine": machine(),
            "engine": await self.engine_name(),
            "dataset": asdict(self.sizes),
            "duration_s": self.duration,
            "concurrency": self.concurrency,
            "scenarios": {name: flatten(result) for name, result in scenarios.items()},
        }
        if subscribe is not None:
            report["subscribe"] = subscribe
        if growth_figures:
            report["growth"] = growth_figures
        if langchain is not None:
            report["langchain"] = langchain
        return report

    async def scenario_subscribe(self, server: Server) -> dict[str, Any]:
        self.progress.say(
            f"subscribe: {self.live.subscribers} subscribers of {self.live.sessions} sessions"
        )
        scenario = SubscribeScenario(
            http_url=server.url,
            post=server.wire.post_json,
            cpu=server.cpu,
            sizes=self.live,
            duration=self.duration,
        )
        return await scenario.run()

    async def scenario_write(
        self, server: Server, http: httpx.AsyncClient, *, concurrency: int
    ) -> Result:
        target = self.session_ids[0]
        call = self.write_call(server, http, target)
        # Sessions of their own, so the API's reads never meet rows the floors wrote.
        floor_session = f"floor-{target}"
        bare_target = {"project_id": PROJECT, "session_id": f"bare-floor-{target}"}
        await self.db.sessions.update_one(
            bare_target, {"$setOnInsert": {"next_seq": 0, "memory_count": 0}}, upsert=True
        )

        async def floor() -> None:
            # The cheapest driver calls that keep addMemories' guarantees (idempotent by uuid,
            # seq order, memoryCount exact, deletion races): the data layer's own, as the
            # window's floor is.
            memory = NewMemory(role_type="user", content=BOT_MESSAGE, uuid=uuid.uuid4().hex)
            appended = await memory_repo.add_memories(
                self.db, project_id=PROJECT, session_id=floor_session, user_id=None,
                memories=[memory],
            )  # fmt: skip
            encode([{"uuid": m["uuid"], "seq": m["seq"]} for m in appended.memories])

        async def bare() -> None:
            # Two commands that give the same answer without those guarantees (counted before
            # the insert; blind to a duplicate uuid and to a deletion in between).
            session = await self.db.sessions.find_one_and_update(
                bare_target,
                {"$inc": {"next_seq": 1, "memory_count": 1}},
                projection={"next_seq": 1},
                return_document=True,  # pymongo's ReturnDocument.AFTER
            )
            now = int(time.time() * 1000)
            doc = {
                **bare_target,
                "uuid": uuid.uuid4().hex,
                "seq": (session or {}).get("next_seq", 0),
                "role": None,
                "role_type": "user",
                "content": BOT_MESSAGE,
                "metadata": {},
                "token_count": None,
                "created_ms": now,
                "updated_ms": now,
                "deleted_ms": 0,
            }
            await self.db.memories.insert_one(doc)
            encode({"uuid": doc["uuid"], "seq": doc["seq"]})

        name = "write_concurrent" if concurrency > 1 else "write"
        return await self.measure(
            name, server, http, call, floor, concurrency=concurrency, beside={"bare_floor": bare}
        )

    def write_call(
        self, server: Server, http: httpx.AsyncClient, session_id: str
    ) -> Callable[[], Awaitable[bool]]:
        """One ``addMemories`` of one new message to ``session_id``: whether it succeeded."""

        async def call() -> bool:
            memory = {"uuid": uuid.uuid4().hex, "roleType": "USER", "content": BOT_MESSAGE}
            variables = {"input": {"sessionId": session_id, "memories": [memory]}}
            return await self.graphql(http, server, WRITE_QUERY, variables) is not None

        return call

    def window_call(
        self, server: Server, http: httpx.AsyncClient, session_id: str
    ) -> Callable[[], Awaitable[bool]]:
        """One read of the recent window (``WINDOW_QUERY``) of ``session_id``."""

        async def call() -> bool:
            return await self.graphql(http, server, WINDOW_QUERY, {"id": session_id}) is not None

        return call

    async def scenario_window(
        self, server: Server, http: httpx.AsyncClient, session_id: str, name: str = "window"
    ) -> Result:
        call = self.window_call(server, http, session_id)

        async def floor() -> None:
            # The best the driver does for this answer: the session and its last 20 memories in
            # one aggregate (the data layer's own), not two reads.
            session, rows = await memory_repo.session_with_memories(
                self.db,
                project_id=PROJECT,
                session_id=session_id,
                window=RECENT_20,
                fields=memory_repo.CHAT_FIELDS,
            )
            encode({"session": session is not None, "nodes": rows[::-1]})

        return await self.measure(name, server, http, call, floor)

    async def scenario_nested(self, server: Server, http: httpx.AsyncClient) -> Result:
        async def call() -> bool:
            return await self.graphql(http, server, NESTED_QUERY, {}) is not None

        async def floor() -> None:
            users = (
                await self.db.users.find({"project_id": PROJECT, "deleted_ms": 0})
                .sort("order_key", 1)
                .limit(10)
                .to_list()
            )
            branches = [
                window_branch({"project_id": PROJECT, "user_id": user["user_id"]}, "order_key", 1)
                for user in users
            ]
            sessions = await (
                await self.db.sessions.aggregate(union_pipeline("sessions", branches))
            ).to_list()
            branches = [
                window_branch({"seq_key": seq_range(session["session_id"])}, "seq_key", -1)
                for session in sessions
            ]
            rows = (
                await (
                    await self.db.memories.aggregate(union_pipeline("memories", branches))
                ).to_list()
                if branches
                else []
            )
            by_session: dict[str, list[str]] = {}
            for row in rows:
                by_session.setdefault(row["session_id"], []).append(row["content"])
            encode(
                [
                    {
                        "sessions": [
                            by_session.get(s["session_id"], [])[::-1]
                            for s in sessions
                            if s["user_id"] == u["user_id"]
                        ]
                    }
                    for u in users
                ]
            )

        return await self.measure("nested", server, http, call, floor)

    async def scenario_listing(self, server: Server, http: httpx.AsyncClient) -> Result:
        async def call() -> bool:
            after = None
            while True:
                data = await self.graphql(http, server, LISTING_QUERY, {"after": after})
                if data is None:
                    return False
                page = data["sessions"]
                if not page["pageInfo"]["hasNextPage"]:
                    return True
                after = page["pageInfo"]["endCursor"]

        async def floor() -> None:
            after = None
            while True:
                match: dict[str, Any] = {"project_id": PROJECT, "deleted_ms": 0}
                if after is not None:
                    match["order_key"] = {"$gt": after}
                rows = (
                    await self.db.sessions.find(match, {"session_id": 1, "order_key": 1})
                    .sort("order_key", 1)
                    .limit(101)
                    .to_list()
                )
                encode([r["session_id"] for r in rows[:100]])
                if len(rows) <= 100:
                    return
                after = rows[99]["order_key"]

        result = await self.measure("listing", server, http, call, floor)
        result.extra["pages_per_walk"] = -(-len(self.session_ids) // 100)
        return result

    async def scenario_search(self, server: Server, http: httpx.AsyncClient, case: str) -> Result:
        """One search (``SEARCH_TEXT``; the user filter for ``search_user``) for its first page of
        20, against the same ``$text`` query through the driver (with the user's sessions read
        first for the user filter, as memories do not hold their user)."""
        given = {"userId": SEARCHED_USER} if case == "search_user" else None
        variables = {"q": SEARCH_TEXT[case], "filter": given}

        async def call() -> bool:
            return await self.graphql(http, server, SEARCH_QUERY, variables) is not None

        async def floor() -> None:
            match: dict[str, Any] = {
                "$text": {"$search": FLOOR_SEARCH[case]},
                "project_id": PROJECT,
                "deleted_ms": 0,
            }
            if given is not None:
                sessions = await self.db.sessions.find(
                    {"project_id": PROJECT, "user_id": SEARCHED_USER, "deleted_ms": 0},
                    {"session_id": 1},
                ).to_list()
                match["session_id"] = {"$in": [row["session_id"] for row in sessions]}
            score = {"$meta": "textScore"}
            rows = (
                await self.db.memories.find(
                    match, {"uuid": 1, "content": 1, "created_ms": 1, "score": score, "_id": 0}
                )
                .sort([("score", score), ("created_ms", -1), ("uuid", -1)])
                .limit(21)
                .to_list()
            )
            encode({"edges": rows[:20], "hasNextPage": len(rows) > 20})

        return await self.measure(case, server, http, call, floor)

    async def scenario_growth(
        self, server: Server, http: httpx.AsyncClient, size: int
    ) -> dict[str, Any]:
        session_id = f"growth-{size}"
        self.progress.say(f"growth: filling a session with {size} memories")
        await self.fill(session_id, size)
        result = await self.scenario_window(server, http, session_id, name=f"window@{size}")
        return {"memories": size, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
                "floor_p50_ms": result.floor_p50_ms, "ratio_p50": result.ratio_p50,
                "db_commands_per_request": result.db_commands_per_request}  # fmt: skip


RECENT_20 = Window(descending=True, limit=20)


def fill_message(session_id: str, n: int) -> tuple[str, str]:
    """The role type and content of message ``n`` of a session the bench fills."""
    role_type = "user" if n % 2 == 0 else "assistant"
    return role_type, f"message {n} of {session_id}: " + "lorem ipsum " * 8


def encode(value: Any) -> bytes:
    """A floor's answer as JSON, with the library the API encodes with (orjson)."""
    return orjson.dumps(value, default=str)


def seq_range(session_id: str) -> dict[str, str]:
    """The ``seq_key`` range of one session's memories (the index-backed shape)."""
    prefix = f"{PROJECT}{memory_repo.SEQ_SEPARATOR}{session_id}"
    return {"$gte": prefix + memory_repo.SEQ_SEPARATOR, "$lt": prefix + memory_repo.SEQ_END}


def window_branch(match: dict[str, Any], key: str, direction: int) -> list[dict[str, Any]]:
    """A floor pipeline branch: ten live rows of one parent, by ``key``."""
    return [
        {"$match": {**match, "deleted_ms": 0}},
        {"$sort": {key: direction}},
        {"$limit": 10},
    ]


def flatten(result: Result) -> dict[str, Any]:
    data = asdict(result)
    extra = data.pop("extra")
    return {**data, **extra}


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


COLUMNS = (
    ("requests", 9, "d"),
    ("errors", 7, "d"),
    ("rps", 9, ".1f"),
    ("p50_ms", 9, ".2f"),
    ("p99_ms", 9, ".2f"),
    ("floor_p50_ms", 13, ".2f"),
    ("ratio_p50", 10, ".2f"),
    ("db_commands_per_request", 12, ".2f"),
    ("cpu_ms_per_request", 12, ".2f"),
)
HEADINGS = {
    "db_commands_per_request": "db cmd/req",
    "cpu_ms_per_request": "cpu ms/req",
    "floor_p50_ms": "floor p50 ms",
    "ratio_p50": "ratio p50",
}

LIVE_COLUMNS = (
    ("writes", 8, "writes", "d"),
    ("events", 8, "events", "d"),
    ("events/s", 10, "events_per_s", ".1f"),
    ("p50 ms", 9, "p50_ms", ".2f"),
    ("p99 ms", 9, "p99_ms", ".2f"),
    ("start p50", 11, "p50_from_start_ms", ".2f"),
    ("start p99", 11, "p99_from_start_ms", ".2f"),
    ("cpu ms/event", 14, "cpu_ms_per_event", ".3f"),
    ("lost", 6, "lost", "d"),
    ("repeated", 10, "repeated", "d"),
)


def render_table(report: dict[str, Any]) -> str:
    """The report for people."""
    machine_info, engine = report["machine"], report["engine"]
    header = f"{'scenario':<18}" + "".join(
        f"{HEADINGS.get(name, name.replace('_ms', ' ms')):>{width}}" for name, width, _ in COLUMNS
    )
    lines = [
        f"memvault bench: {engine}, {machine_info['cpus']} CPUs, Python {machine_info['python']}",
        f"dataset {report['dataset']}, {report['duration_s']:g} s per scenario, "
        f"{report['concurrency']} clients in write_concurrent",
    ]
    if report["scenarios"]:
        lines += ["", header, "-" * len(header)]
    for name, figures in report["scenarios"].items():
        cells = "".join(f"{figures[key]:>{width}{fmt}}" for key, width, fmt in COLUMNS)
        lines.append(f"{name:<18}{cells}")
    bare = [(n, f) for n, f in report["scenarios"].items() if "bare_floor_p50_ms" in f]
    if bare:
        lines += ["", "writes beside the bare floor (2 commands, without addMemories' guarantees):"]
        lines += [
            f"  {name:<18} bare floor p50 {f['bare_floor_p50_ms']:.2f} ms, ratio"
            f" {f['bare_floor_ratio_p50']:.2f}"
            + (f", bare floor {f['bare_floor_rps']:,.0f} rps" if "bare_floor_rps" in f else "")
            for name, f in bare
        ]
    if live := report.get("subscribe"):
        lines += [
            "",
            f"subscribe: memoryAdded over graphql-transport-ws, {live['subscribers']} subscribers"
            f" of {live['sessions']} sessions, {live['writers']} writers"
            " (latency from the write's response; from its start):",
            "".join(f"{heading:>{width}}" for heading, width, _, _ in LIVE_COLUMNS),
            "".join(f"{live[key]:>{width}{fmt}}" for _, width, key, fmt in LIVE_COLUMNS),
        ]
    if report.get("growth"):
        lines += ["", "recent window (memories(last: 20)) as one session grows:"]
        lines.append(f"{'memories':>10}{'p50 ms':>9}{'p99 ms':>9}{'floor p50 ms':>13}{'ratio':>7}")
        for row in report["growth"]:
            lines.append(
                f"{row['memories']:>10}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
                f"{row['floor_p50_ms']:>13.2f}{row['ratio_p50']:>7.2f}"
            )
    if report.get("langchain"):
        from memvault.bench_langchain import render

        lines += ["", *render(report["langchain"])]
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def database(mongodb_uri: str | None) -> AsyncIterator[str]:
    """The given MongoDB, or an embedded engine in a temporary directory for the bench's run."""
    if mongodb_uri:
        yield mongodb_uri
        return
    with tempfile.TemporaryDirectory(prefix="memvault-bench-") as tmp:
        engine = EmbeddedEngine(Path(tmp))
        await asyncio.to_thread(engine.start)
        try:
            yield engine.uri
        finally:
            engine.stop()


async def run_bench(
    *,
    mongodb_uri: str | None,
    duration: float,
    concurrency: int,
    sizes: Sizes,
    growth: list[int],
    progress: bool,
    live: LiveSizes | None = None,
    only: tuple[str, ...] = SCENARIOS,
    compare_langchain: bool = False,
) -> dict[str, Any]:
    async with database(mongodb_uri) as uri:
        bench = Bench(
            mongodb_uri=uri,
            duration=duration,
            concurrency=concurrency,
            sizes=sizes,
            progress=Progress(progress),
            live=live,
            only=only,
            compare_langchain=compare_langchain,
        )
        try:
            return await bench.run(growth=growth)
        finally:
            await bench.close()
