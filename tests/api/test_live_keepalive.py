"""WebSocket keepalive against ``memvault serve`` (``MEMVAULT_WS_PING_INTERVAL``): a peer that
stops answering pings is closed; a client that answers them stays connected."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.live import MEMORY_ADDED, PROTOCOL, LiveClient
from tests.support.server import live_server, uid

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.server import LiveServer

INTERVAL_S = 0.5
TEXT, CLOSE, PING = 0x1, 0x8, 0x9
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's, for Sec-WebSocket-Accept


@pytest.fixture(scope="module")
def server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(
        mongo_uri, tmp_path_factory.mktemp("keepalive"), MEMVAULT_WS_PING_INTERVAL=str(INTERVAL_S)
    ) as live:
        yield live


class RawWebSocket:
    """A WebSocket client done by hand on a TCP socket: it answers nothing by itself."""

    def __init__(self, port: int) -> None:
        self.conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.conn.sendall(
            (
                "GET /graphql HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101 "), head
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert headers["sec-websocket-accept"] == accept
        assert headers["sec-websocket-protocol"] == PROTOCOL

    def send_text(self, text: str) -> None:
        """One masked text frame (clients must mask)."""
        payload = text.encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.conn.sendall(bytes([0x80 | TEXT, 0x80 | len(payload)]) + mask + masked)

    def frame(self) -> tuple[int, bytes] | None:
        """The next frame's (opcode, payload); None once the server closed the connection."""
        if not self._fill(2):
            return None
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        start = 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if not self._fill(2 + size):
                return None
            length, start = int.from_bytes(self.buffer[2 : 2 + size], "big"), 2 + size
        if not self._fill(start + length):
            return None
        payload = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return opcode, payload

    def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            chunk = self._recv()
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def _recv(self) -> bytes:
        try:
            return self.conn.recv(65536)
        except ConnectionResetError:
            return b""


def test_a_peer_that_answers_no_ping_is_closed(server: LiveServer) -> None:
    ws = RawWebSocket(server.port)
    with ws.conn:
        ws.send_text(json.dumps({"type": "connection_init", "payload": {}}))
        ack = ws.frame()
        assert ack is not None
        assert ack[0] == TEXT  # graphql-transport-ws messages are text frames
        assert json.loads(ack[1]) == {"type": "connection_ack"}
        pings = 0
        deadline = time.monotonic() + 15  # generous: closed after about 2 intervals
        while (frame := ws.frame()) is not None and frame[0] != CLOSE:
            assert frame[0] == PING, frame
            pings += 1
            assert time.monotonic() < deadline, f"still open after {pings} pings"
        assert pings >= 1
        assert time.monotonic() < deadline


async def add(http: httpx.AsyncClient, session_id: str, content: str) -> None:
    response = await http.post(
        "/graphql",
        json={
            "query": "mutation($s: String!, $c: String!) { addMemories(input: {sessionId: $s,"
            " memories: [{roleType: USER, content: $c}]}) { session { id } } }",
            "variables": {"s": session_id, "c": content},
        },
    )
    assert not response.json().get("errors"), response.text


async def test_a_client_that_answers_pings_stays_connected(server: LiveServer) -> None:
    session = uid("s")
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=20) as http,
        LiveClient.connect(server.url, ping_interval=None) as live,  # only the server pings
    ):
        await add(http, session, "before")
        sub = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
        assert [m["content"] for m in await live.memories(sub, 1)] == ["before"]
        await asyncio.sleep(8 * INTERVAL_S)  # the library answers each ping with a pong
        assert not live.closed.done()
        await add(http, session, "still here")
        assert [m["content"] for m in await live.memories(sub, 1)] == ["still here"]
