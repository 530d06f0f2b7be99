"""`memvault serve` as a user runs it: a real process, real HTTP, real signals.

Each test starts ``python -m memvault serve`` on a free port with its own data directory (the embedded
engine) or, when the suite runs against an external MongoDB (``MEMVAULT_MONGODB_URI``), with that
URI and a database of its own; tests about the embedded engine itself are skipped then.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from memvault.db.engine import EmbeddedEngine, free_port, server_pid
from memvault.db.engine_guard import ENGINE_MODULE

EXTERNAL_URI = os.environ.get("MEMVAULT_MONGODB_URI") or None
embedded_only = pytest.mark.skipif(
    EXTERNAL_URI is not None, reason="about the embedded engine; the suite runs on MongoDB"
)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def engine_pid(data_dir: Path) -> int:
    """The embedded engine's pid, as it wrote it in the data directory."""
    return int((data_dir / "engine.pid").read_text().strip())


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class Server:
    """One ``memvault serve`` process; its stderr (the log) goes to a file."""

    def __init__(self, workdir: Path, data_dir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.data_dir = data_dir
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"serve-{self.port}.stderr"
        self.out_path = workdir / f"serve-{self.port}.stdout"

    def start(self, *, wait: bool = True) -> Server:
        with self.log_path.open("ab") as err, self.out_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memvault", "serve", "--port", str(self.port)],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            self.wait_up()
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_up(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server not up within {START_TIMEOUT_S}s:\n{self.log}")

    def stop(self, stop_signal: signal.Signals = signal.SIGTERM) -> int:
        """SIGTERM (or ``stop_signal``), wait; kill if it does not stop. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(stop_signal)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            pytest.fail(f"server ignored SIGTERM for {STOP_TIMEOUT_S}s:\n{self.log}")

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still running after {timeout}s:\n{self.log}")

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            self.base + "/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ok(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.gql(query, variables)
        assert not body.get("errors"), body
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
def serve_env(tmp_path: Path) -> Any:
    """The environment of a served process: no stray ``MEMVAULT_*``, a data dir in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_")}
    env["MEMVAULT_DATA_DIR"] = str(tmp_path / "data")
    database = None
    if EXTERNAL_URI is not None:
        database = f"serve_{uuid.uuid4().hex[:12]}"
        env["MEMVAULT_MONGODB_URI"] = EXTERNAL_URI
        env["MEMVAULT_DATABASE"] = database
    yield env
    if database is not None:
        client: MongoClient[dict[str, Any]] = MongoClient(EXTERNAL_URI)
        try:
            client.drop_database(database)
        finally:
            client.close()


@pytest.fixture
def servers(tmp_path: Path, serve_env: dict[str, str]) -> Any:
    """Makes servers on this test's data directory; stops every one of them afterwards."""
    made: list[Server] = []
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    def make(env: dict[str, str] | None = None) -> Server:
        server = Server(workdir, tmp_path / "data", env or serve_env)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
                try:
                    server.proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                    server.proc.wait(timeout=10)


CREATE_USER = """mutation($id: String!) {
  createUser(input: {userId: $id, email: "ada@example.com", metadata: {lang: "en"}}) { userId }
}"""
READ_USER = "query($id: String!) { user(userId: $id) { userId email metadata } }"


def test_routes_answer(servers: Any) -> None:
    server = servers().start()
    assert server.ok("{ __typename }") == {"__typename": "Query"}
    body = server.gql("{ __typename }")
    assert body == {"data": {"__typename": "Query"}}

    page = httpx.get(server.base + "/graphql", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "graphiql" in page.text.lower()

    health = httpx.get(server.base + "/healthz", timeout=5)
    assert health.status_code == 200
    assert "server" not in health.headers  # the server software is not advertised
    ready = httpx.get(server.base + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text


def test_startup_log_has_one_line_per_step_and_the_url(servers: Any) -> None:
    server = servers().start()
    lines = server.log.splitlines()
    if EXTERNAL_URI is None:
        steps = ["starting embedded engine", "embedded engine answers on"]
    else:
        steps = ["using MongoDB at"]
    steps += [
        "answers ping",
        "indexes",
        "purge task",
        f"open http://127.0.0.1:{server.port}/graphql",
    ]
    positions = []
    for step in steps:
        matching = [i for i, line in enumerate(lines) if step in line]
        assert len(matching) == 1, f"expected one log line with {step!r}:\n{server.log}"
        positions.append(matching[0])
    assert positions == sorted(positions), f"start-up steps out of order:\n{server.log}"


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["TERM", "INT", "HUP"]
)
def test_stop_signal_stops_gracefully(servers: Any, stop_signal: signal.Signals) -> None:
    server = servers().start()
    pid = engine_pid(server.data_dir) if EXTERNAL_URI is None else None
    server.ok(CREATE_USER, {"id": "u-term"})
    assert server.stop(stop_signal) == 0, server.log
    assert "Application shutdown complete" in server.log
    assert "Traceback" not in server.log, server.log
    if pid is not None:
        assert wait_for(lambda: not pid_running(pid), 5), f"engine {pid} still runs"
        assert not (server.data_dir / "engine.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.base + "/healthz", timeout=1)


def test_data_survives_a_restart(servers: Any) -> None:
    first = servers().start()
    assert first.ok(CREATE_USER, {"id": "u-keep"}) == {"createUser": {"userId": "u-keep"}}
    pid = engine_pid(first.data_dir) if EXTERNAL_URI is None else None
    if pid is not None:
        address = json.loads((first.data_dir / "engine.json").read_text())
        assert address["pid"] == pid
    assert first.stop() == 0, first.log
    if pid is not None:
        assert wait_for(lambda: not pid_running(pid), 5), f"engine {pid} outlived the server"

    second = servers().start()
    assert second.ok(READ_USER, {"id": "u-keep"}) == {
        "user": {"userId": "u-keep", "email": "ada@example.com", "metadata": {"lang": "en"}}
    }
    assert second.stop() == 0, second.log


@embedded_only
def test_killed_engine_is_restarted_and_data_kept(servers: Any) -> None:
    server = servers().start()
    server.ok(CREATE_USER, {"id": "u-crash"})
    old_pid = engine_pid(server.data_dir)
    log_before = len(server.log)

    os.kill(old_pid, signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        status = httpx.get(server.base + "/readyz", timeout=5).status_code
        statuses.append(status)
        if status == 503:
            break
    assert 503 in statuses, f"readyz never reported the engine down: {statuses}"
    assert httpx.get(server.base + "/healthz", timeout=5).status_code == 200

    assert wait_for(
        lambda: httpx.get(server.base + "/readyz", timeout=5).status_code == 200, 15, 0.2
    ), f"engine not back:\n{server.log}"
    restarted = re.compile(r"engine.*\b(back|restarted)\b", re.IGNORECASE)
    assert wait_for(lambda: restarted.search(server.log[log_before:]), 5), server.log[log_before:]
    new_pid = engine_pid(server.data_dir)
    assert new_pid != old_pid
    assert pid_running(new_pid)
    assert json.loads((server.data_dir / "engine.json").read_text())["pid"] == new_pid

    assert server.ok(READ_USER, {"id": "u-crash"})["user"]["userId"] == "u-crash"
    server.ok(CREATE_USER, {"id": "u-after-crash"})
    assert server.stop() == 0, server.log
    assert wait_for(lambda: not pid_running(new_pid), 5), f"engine {new_pid} still runs"


@embedded_only
def test_unusable_data_dir_fails_fast_with_the_reason(
    servers: Any, serve_env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {**serve_env, "MEMVAULT_DATA_DIR": str(blocker / "data")}
    server = servers(env).start(wait=False)
    code = server.wait_exit(30)
    assert code != 0, server.log
    assert "cannot start the embedded engine" in server.log, server.log
    assert str(blocker / "data") in server.log
    assert "Not a directory" in server.log


@embedded_only
def test_engine_start_timeout_fails_fast_and_leaves_no_engine(
    servers: Any, serve_env: dict[str, str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "slow"
    env = {**serve_env, "MEMVAULT_DATA_DIR": str(data_dir), "MEMVAULT_ENGINE_START_TIMEOUT": "0.01"}
    server = servers(env).start(wait=False)
    code = server.wait_exit(30)
    assert code != 0, server.log
    assert "cannot start the embedded engine" in server.log, server.log
    assert "did not answer ping" in server.log, server.log
    # No engine is left serving that data directory.
    assert not (data_dir / "engine.json").exists()
    pid_file = data_dir / "engine.pid"
    if pid_file.exists():
        pid = engine_pid(data_dir)
        assert wait_for(lambda: not pid_running(pid), 5), f"engine {pid} left running"


@embedded_only
def test_purge_command_uses_the_running_servers_engine(
    servers: Any, serve_env: dict[str, str]
) -> None:
    server = servers().start()
    server.ok(CREATE_USER, {"id": "u-gone"})
    server.ok(CREATE_USER, {"id": "u-stays"})
    server.ok(
        """mutation { addMemories(input: {sessionId: "s-gone", userId: "u-gone",
             memories: [{roleType: USER, content: "hi"}]}) { session { sessionId } } }"""
    )
    assert server.ok('mutation { deleteUser(userId: "u-gone") { deleted } }') == {
        "deleteUser": {"deleted": True}
    }
    time.sleep(0.01)
    result = subprocess.run(
        [sys.executable, "-m", "memvault", "purge", "--older-than", "0"],
        cwd=server.workdir,
        env=serve_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["purged"] == {"memories": 1, "sessions": 1, "users": 1}
    assert server.ok(READ_USER, {"id": "u-stays"})["user"]["userId"] == "u-stays"
    # Gone from storage, not just hidden.
    uri = json.loads((server.data_dir / "engine.json").read_text())["uri"]
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        db = client["memvault"]
        assert db["users"].count_documents({"user_id": "u-gone"}) == 0
        assert db["sessions"].count_documents({"session_id": "s-gone"}) == 0
        assert db["memories"].count_documents({"session_id": "s-gone"}) == 0
        assert db["users"].count_documents({"user_id": "u-stays"}) == 1
    finally:
        client.close()
    assert server.stop() == 0, server.log


@embedded_only
@pytest.mark.parametrize("restart", ["after", "at-once"])
def test_engine_dies_with_a_killed_server_and_the_next_start_succeeds(
    servers: Any, restart: str
) -> None:
    """kill -9 leaves the server no chance to stop its engine: the engine stops by itself, and a
    new server on the same data directory starts (at once: it stops the old engine if need be)."""
    first = servers().start()
    first.ok(CREATE_USER, {"id": "u-killed"})
    old_engine = engine_pid(first.data_dir)
    assert first.proc is not None
    first.proc.kill()
    first.proc.wait(timeout=10)
    if restart == "after":
        assert wait_for(lambda: not pid_running(old_engine), 10), f"engine {old_engine} outlived"
    second = servers().start()
    assert second.ok(READ_USER, {"id": "u-killed"})["user"]["userId"] == "u-killed"
    assert not pid_running(old_engine)
    assert "Traceback" not in second.log, second.log
    assert "already running" not in second.log, second.log
    assert second.stop() == 0, second.log


def forgotten_engine(data_dir: Path, owner: int | None) -> subprocess.Popen[bytes]:
    """An engine on ``data_dir`` that nobody stops: started like an older memvault did (no
    guard), its address file naming ``owner`` (if any) as the process that started it."""
    engine = EmbeddedEngine(data_dir)
    engine.data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", ENGINE_MODULE, *engine.engine_arguments()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert wait_for(lambda: server_pid(engine.uri) == proc.pid, 20), "engine did not start"
    address: dict[str, Any] = {"uri": engine.uri, "pid": proc.pid}
    if owner is not None:
        address["owner"] = owner
    (engine.data_dir / "engine.json").write_text(json.dumps(address))
    return proc


@embedded_only
@pytest.mark.parametrize("owner", ["unrecorded", "gone"])
def test_a_stale_engine_is_stopped_by_the_next_start_with_one_line(
    servers: Any, tmp_path: Path, owner: str
) -> None:
    """An engine whose starter is gone (an older memvault recorded none): stopped, one line."""
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                            capture_output=True, text=True)  # fmt: skip
    stale = forgotten_engine(tmp_path / "data", int(exited.stdout) if owner == "gone" else None)
    try:
        server = servers().start()
        assert stale.wait(timeout=10) is not None  # stopped
        lines = [line for line in server.log.splitlines() if "stale embedded engine" in line]
        assert len(lines) == 1, server.log
        assert f"process {stale.pid}" in lines[0], lines[0]
        assert "Traceback" not in server.log, server.log
        assert engine_pid(server.data_dir) != stale.pid
        server.ok(CREATE_USER, {"id": "u-after-stale"})
        assert server.stop() == 0, server.log
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait()


@embedded_only
def test_a_data_dir_in_use_by_a_live_process_is_refused_in_one_line(
    servers: Any, tmp_path: Path
) -> None:
    """An engine that a live process started and still owns is not stale: the new server
    says who uses the data directory, exits 1, and leaves that engine alone."""
    engine = EmbeddedEngine(tmp_path / "data")
    engine.start()
    try:
        server = servers().start(wait=False)
        assert server.wait_exit(30) == 1, server.log
        assert f"in use by process {os.getpid()}" in server.log, server.log
        assert "Traceback" not in server.log, server.log
        assert engine.process is not None
        assert server_pid(engine.uri) == engine.process.pid  # untouched
    finally:
        engine.stop()
