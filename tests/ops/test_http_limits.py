"""What a served ``memvault serve`` does with oversized heads and slow or idle connections.

One server per module, with the deadlines set to 1 s (MEMVAULT_HEADER_TIMEOUT, _BODY_TIMEOUT,
_KEEP_ALIVE_TIMEOUT); raw sockets, so the tests control every byte and every pause. The last
test is in process: what the endpoint does with a body cut off by a disconnect.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from memvault.main import create_app
from tests.support.asgi import post_scope, running
from tests.support.server import EXTERNAL_URI, LiveServer, serve_environment

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.config import Settings

TIMEOUT_S = 1
BOUND_S = 10.0  # generous: the connection is closed within this, instead of never
MAX_HEADER_BYTES = 32768  # the default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("http-limits")
    env = serve_environment(
        tmp / "data",
        MEMVAULT_HEADER_TIMEOUT=str(TIMEOUT_S),
        MEMVAULT_BODY_TIMEOUT=str(TIMEOUT_S),
        MEMVAULT_KEEP_ALIVE_TIMEOUT=str(TIMEOUT_S),
    )
    if EXTERNAL_URI is not None:
        env["MEMVAULT_MONGODB_URI"] = EXTERNAL_URI
    served = LiveServer(env, tmp).start()
    try:
        yield served
    finally:
        assert served.stop() == 0, served.log


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=BOUND_S)
    sock.settimeout(BOUND_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails if it keeps the connection open."""
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"still open after {BOUND_S}s; received {bytes(data)!r}")
        except ConnectionResetError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


def read_response(sock: socket.socket) -> bytes:
    """One response with a content-length body."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


GET = b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n"


@pytest.mark.slow
def test_a_connection_that_sends_nothing_is_closed(server: LiveServer) -> None:
    with connect(server) as sock:
        assert read_until_closed(sock) == b""


@pytest.mark.slow
def test_an_unfinished_head_gets_408_and_the_close(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-a: ")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"code":"REQUEST_TIMEOUT"' in answer


@pytest.mark.slow
def test_a_body_sent_a_byte_at_a_time_is_cut(server: LiveServer) -> None:
    body = b'{"query": "{ __typename }"}'.ljust(200)
    head = b"POST /graphql HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
    head += b"content-length: %d\r\n\r\n" % len(body)
    with connect(server) as sock:
        sock.sendall(head)
        stop = threading.Event()

        def trickle() -> None:
            for byte in body:
                if stop.wait(0.2):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            answer = read_until_closed(sock)
        finally:
            stop.set()
            sender.join()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"body" in answer


@pytest.mark.slow
def test_a_kept_alive_client_is_served_then_closed_when_idle(server: LiveServer) -> None:
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(GET)
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(TIMEOUT_S / 4)
        # a head in pieces, each well within the deadline, and a body in two parts
        query = b'{"query": "{ __typename }"}'
        sock.sendall(b"POST /graphql HTTP/1.1\r\nhost: t\r\n")
        time.sleep(TIMEOUT_S / 4)
        sock.sendall(b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(query))
        sock.sendall(query[:10])
        time.sleep(TIMEOUT_S / 4)
        sock.sendall(query[10:])
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert answer.endswith(b'{"data":{"__typename":"Query"}}')
        assert read_until_closed(sock) == b""  # idle past MEMVAULT_KEEP_ALIVE_TIMEOUT


@pytest.mark.slow
def test_a_head_over_the_limit_gets_431_and_the_close(server: LiveServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(head)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert b'"code":"PAYLOAD_TOO_LARGE"' in answer
    with connect(server) as sock:  # just under the limit is fine
        sock.sendall(head[: MAX_HEADER_BYTES - 4 - 100] + b"\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


@pytest.mark.slow
def test_many_huge_heads_leave_memory_bounded(server: LiveServer) -> None:
    """Eight clients each stream 8 MiB of one header line at once: each is refused after the
    limit, and the server's memory does not grow by what they sent (64 MiB)."""
    before = server.rss_mb()
    peak = before
    chunk = b"a" * 65536
    socks = [connect(server) for _ in range(8)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: ")
        for _ in range(128):  # 8 MiB each
            for sock in socks:
                with contextlib.suppress(OSError):  # refused and closed: nothing more to send
                    sock.sendall(chunk)
            peak = max(peak, server.rss_mb())
        answers = [read_until_closed(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(answer.startswith(b"HTTP/1.1 431 ") for answer in answers), answers
    assert peak - before < 32, f"RSS {before:.0f} -> {peak:.0f} MB while huge heads arrived"


async def test_a_body_cut_off_by_a_disconnect_is_not_run(
    settings: Settings,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """The client goes away (or is cut off for sending too slowly) after a complete JSON
    document but before the declared end of its body: nothing is run, nothing written."""
    query = 'mutation { createUser(input: {userId: "u-cut"}) { userId } }'
    document = b'{"query": "%s"}' % query.replace('"', '\\"').encode()
    declared = len(document) + 100  # trailing spaces the client never sent
    messages = [
        {"type": "http.request", "body": document + b" " * 50, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = post_scope(
        [
            (b"host", b"t"),
            (b"content-type", b"application/json"),
            (b"content-length", str(declared).encode()),
        ]
    )
    app = create_app(settings, client=mongo_client)
    async with running(app) as served:
        await served(scope, receive, send)
    assert sent == []
    assert await db["users"].count_documents({}) == 0
