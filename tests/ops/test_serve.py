"""`memvault serve` as a user runs it: a real process, real HTTP, real signals.

Each test starts ``python -m memvault serve`` on a free port (``servers``, ``serve_env``: see
tests/conftest.py) with its own data directory (the embedded engine) or, when the suite runs
against an external MongoDB (``MEMVAULT_MONGODB_URI``), with that URI and a database of its own;
tests about the embedded engine itself are skipped then.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

from memvault.db.engine import EmbeddedEngine, process_running, server_pid
from memvault.db.engine_guard import ENGINE_MODULE
from tests.support.server import EXTERNAL_URI, embedded_only, engine_pid, wait_for

pytestmark = pytest.mark.slow  # each test starts memvault serve processes

CREATE_USER = """mutation($id: String!) {
  createUser(input: {userId: $id, email: "ada@example.com", metadata: {lang: "en"}}) { userId }
}"""
READ_USER = "query($id: String!) { user(userId: $id) { userId email metadata } }"


def test_routes_answer(servers: Any) -> None:
    server = servers().start()
    assert server.ok("{ __typename }") == {"__typename": "Query"}
    body = server.gql("{ __typename }")
    assert body == {"data": {"__typename": "Query"}}

    page = httpx.get(server.url + "/graphql", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "graphiql" in page.text.lower()

    health = httpx.get(server.url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert "server" not in health.headers  # the server software is not advertised
    ready = httpx.get(server.url + "/readyz", timeout=5)
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
        assert wait_for(lambda: not process_running(pid), 5), f"engine {pid} still runs"
        assert not (server.data_dir / "engine.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/healthz", timeout=1)


def test_data_survives_a_restart(servers: Any) -> None:
    first = servers().start()
    assert first.ok(CREATE_USER, {"id": "u-keep"}) == {"createUser": {"userId": "u-keep"}}
    pid = engine_pid(first.data_dir) if EXTERNAL_URI is None else None
    if pid is not None:
        address = json.loads((first.data_dir / "engine.json").read_text())
        assert address["pid"] == pid
    assert first.stop() == 0, first.log
    if pid is not None:
        assert wait_for(lambda: not process_running(pid), 5), f"engine {pid} outlived the server"

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
        status = httpx.get(server.url + "/readyz", timeout=5).status_code
        statuses.append(status)
        if status == 503:
            break
    assert 503 in statuses, f"readyz never reported the engine down: {statuses}"
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200

    assert wait_for(
        lambda: httpx.get(server.url + "/readyz", timeout=5).status_code == 200, 15, 0.2
    ), f"engine not back:\n{server.log}"
    restarted = re.compile(r"engine.*\b(back|restarted)\b", re.IGNORECASE)
    assert wait_for(lambda: restarted.search(server.log[log_before:]), 5), server.log[log_before:]
    new_pid = engine_pid(server.data_dir)
    assert new_pid != old_pid
    assert process_running(new_pid)
    assert json.loads((server.data_dir / "engine.json").read_text())["pid"] == new_pid

    assert server.ok(READ_USER, {"id": "u-crash"})["user"]["userId"] == "u-crash"
    server.ok(CREATE_USER, {"id": "u-after-crash"})
    metrics = httpx.get(server.url + "/metrics", timeout=5).text
    restarts = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "memvault_engine_restarts_total"
    ]
    assert restarts == [1], metrics
    assert server.stop() == 0, server.log
    assert wait_for(lambda: not process_running(new_pid), 5), f"engine {new_pid} still runs"


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
        assert wait_for(lambda: not process_running(pid), 5), f"engine {pid} left running"


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
    assert first.process is not None
    first.process.kill()
    first.process.wait(timeout=10)
    if restart == "after":
        assert wait_for(lambda: not process_running(old_engine), 10), (
            f"engine {old_engine} outlived"
        )
    second = servers().start()
    assert second.ok(READ_USER, {"id": "u-killed"})["user"]["userId"] == "u-killed"
    assert not process_running(old_engine)
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
