"""The one live-server harness: ``memvault serve`` as a user runs it, a real process on a free
loopback port (``memvault.bench.ServeProcess``), with test conveniences; and a proxy that drops
connections.

A served process gets this environment without any ``MEMVAULT_*`` variable, plus what the test
sets: its own data directory (an embedded engine of its own) or the test run's database server
and a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx
import pytest
from pymongo import MongoClient

from memvault.bench import ServeError, ServeProcess

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

EXTERNAL_URI = os.environ.get("MEMVAULT_MONGODB_URI") or None
embedded_only = pytest.mark.skipif(
    EXTERNAL_URI is not None, reason="about the embedded engine; the suite runs on MongoDB"
)
STOP_TIMEOUT_S = 30.0


def uid(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def serve_environment(data_dir: Path, *, quiet: bool = False, **overrides: str) -> dict[str, str]:
    """The environment of a served process: no stray ``MEMVAULT_*`` but the suite's
    ``MEMVAULT_FAST_PATH``, ``data_dir`` as its data directory; ``quiet``: warnings only, no
    purge task; ``overrides`` last."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MEMVAULT_") or k == "MEMVAULT_FAST_PATH"
    }
    env["MEMVAULT_DATA_DIR"] = str(data_dir)
    if quiet:
        env.update(MEMVAULT_LOG_LEVEL="WARNING", MEMVAULT_PURGE_INTERVAL="0")
    env.update(overrides)
    return env


def engine_pid(data_dir: Path) -> int:
    """The embedded engine's pid, as it wrote it in the data directory."""
    return int((data_dir / "engine.pid").read_text().strip())


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def _proc_status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} for {pid}")


class LiveServer(ServeProcess):
    """One ``memvault serve`` process; failures to start or stop fail the test, with the log."""

    def start(self, *, wait: bool = True) -> Self:
        super().start()
        if wait:
            self.wait_up()
        return self

    def wait_up(self) -> None:
        try:
            self.wait_ready()
        except ServeError as exc:
            pytest.fail(str(exc))

    async def ready(self) -> None:
        await asyncio.to_thread(self.wait_up)

    def stop(
        self, stop_signal: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S
    ) -> int:
        """``stop_signal``, then its exit code; fails the test if it does not stop in time."""
        code = super().stop(stop_signal, timeout)
        if code is None:
            pytest.fail(f"server ignored {stop_signal.name} for {timeout:g}s:\n{self.log}")
        return code

    def halt(self) -> None:
        """Stop it if it was started and still runs (clean-up: no failure)."""
        if self.process is not None:
            ServeProcess.stop(self)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self._started().wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still running after {timeout}s:\n{self.log}")

    @property
    def data_dir(self) -> Path:
        return Path(self.env["MEMVAULT_DATA_DIR"])

    @property
    def database(self) -> str:
        return self.env.get("MEMVAULT_DATABASE", "memvault")

    @property
    def mongo_uri(self) -> str:
        """The database server it uses: the given one, or its embedded engine."""
        given = self.env.get("MEMVAULT_MONGODB_URI")
        if given:
            return given
        uri: str = json.loads((self.data_dir / "engine.json").read_text())["uri"]
        return uri

    def mongo(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)

    def stored(self, collection: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every stored document of ``collection`` matching ``query`` (deleted ones included)."""
        with self.mongo() as client:
            return list(client[self.database][collection].find(query, {"_id": 0}))

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            self.url + "/graphql", json={"query": query, "variables": variables or {}}, timeout=10
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ok(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.gql(query, variables)
        assert not body.get("errors"), body
        data: dict[str, Any] = body["data"]
        return data

    def rss_mb(self) -> float:
        """Its resident memory now (Linux ``/proc``)."""
        return _proc_status_mb(self.pid, "VmRSS")

    def peak_rss_mb(self) -> float:
        """The most resident memory it has had."""
        return _proc_status_mb(self.pid, "VmHWM")


@contextlib.asynccontextmanager
async def serving(*servers: LiveServer) -> AsyncIterator[tuple[LiveServer, ...]]:
    """Start the servers, wait until each is ready, and always stop them afterwards."""
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            await server.ready()
        yield servers
    finally:
        for server in servers:
            server.halt()


@contextlib.contextmanager
def live_server(mongo_uri: str, workdir: Path, **overrides: str) -> Iterator[LiveServer]:
    """A running server on a fresh database of ``mongo_uri`` (quiet, no key cache, no GraphiQL
    unless ``overrides`` say otherwise); stopped and its database dropped afterwards."""
    database = f"c_{uuid.uuid4().hex[:16]}"
    env = serve_environment(
        workdir / "data",
        quiet=True,
        MEMVAULT_MONGODB_URI=mongo_uri,
        MEMVAULT_DATABASE=database,
        MEMVAULT_AUTH_CACHE_SECONDS="0",
        MEMVAULT_GRAPHIQL="false",
    )
    env.update(overrides)
    server = LiveServer(env, workdir)
    try:
        yield server.start()
    finally:
        server.halt()
        with server.mongo() as client:
            client.drop_database(database)


def _read_http_message(conn: socket.socket) -> bytes:
    """One HTTP/1.1 message (headers and a Content-Length body) from ``conn``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@dataclass
class DroppingProxy:
    """A TCP proxy in front of ``target_port``. Its first ``drops`` connections are cut at the
    worst moment: the request is forwarded, the server's whole answer is read (so the server has
    done the work) and the client's connection is closed without it. Later connections are
    piped through."""

    target_port: int
    drops: int = 1
    connections: int = 0
    dropped_requests: list[bytes] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                drop = self.drops > 0
                self.drops -= 1 if drop else 0
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            handler = self._drop if drop else self._pipe
            threading.Thread(target=handler, args=(client,), daemon=True).start()

    def _drop(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            request = _read_http_message(client)
            upstream.sendall(request)
            _read_http_message(upstream)  # the server has answered: the work is done
            self.dropped_requests.append(request)

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def copy(source: socket.socket, sink: socket.socket) -> None:
            try:
                while chunk := source.recv(65536):
                    sink.sendall(chunk)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=copy, args=(upstream, client), daemon=True)
        back.start()
        copy(client, upstream)
        back.join(timeout=30)
        client.close()
        upstream.close()
