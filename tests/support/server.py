"""What the client tests share: a live memvault server over real TCP, and a proxy that drops
connections. (No tests here; the fixtures that use these live in each test module.)

The server is the real application (``create_app``) served by uvicorn in a thread, on the test
run's database server (``mongo_uri``) with a database of its own, so the sync client can talk to
it from the test thread and the async client from the test loop.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvicorn
from pymongo import MongoClient

from memvault.config import Settings
from memvault.main import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

START_TIMEOUT_S = 30.0


def uid(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class LiveServer:
    """memvault on 127.0.0.1:<port>, served from a thread."""

    mongo_uri: str
    database: str
    server: uvicorn.Server
    thread: threading.Thread
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mongo(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)

    def stored(self, collection: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every stored document of ``collection`` matching ``query`` (deleted ones included)."""
        with self.mongo() as client:
            return list(client[self.database][collection].find(query, {"_id": 0}))


@contextlib.contextmanager
def live_server(mongo_uri: str, data_dir: Path, **overrides: Any) -> Iterator[LiveServer]:
    """A running server on a fresh database, stopped and its database dropped afterwards."""
    database = f"c_{uuid.uuid4().hex[:16]}"
    options: dict[str, Any] = {
        "mongodb_uri": mongo_uri,
        "database": database,
        "data_dir": data_dir,
        "purge_interval": 0,
        "auth_cache_seconds": 0,
        "graphiql": False,
        "log_level": "WARNING",
    }
    settings = Settings(**(options | overrides))
    # proto IPPROTO_TCP, as uvicorn's own sockets have it: asyncio sets TCP_NODELAY on accepted
    # connections only then (without it, each response waits ~40 ms for a delayed ACK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), log_config=None, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"memvault-{port}", daemon=True
    )
    live = LiveServer(mongo_uri, database, server, thread, port)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the memvault test server did not start")
            time.sleep(0.01)
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        with live.mongo() as client:
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
