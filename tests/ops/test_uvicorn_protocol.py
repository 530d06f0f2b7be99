"""The HTTP protocol's head limit and deadlines, driven byte by byte without a socket.

``app/http/uvicorn_protocol.py`` subclasses uvicorn's internal httptools protocol: the first test
names every internal it uses, so a uvicorn release that moves one fails here, by name.
(``tests/ops/test_http_limits.py`` checks the same behaviour on a served process.)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.server import ServerState

from memvault.http import uvicorn_protocol
from memvault.http.uvicorn_protocol import HttpLimits, LimitedHttpToolsProtocol, protocol_class

LIMIT = 2048
TIMEOUT = 0.2
WAIT = 5.0  # generous: "bounded", not "fast"


def test_uvicorn_internals_we_rely_on_are_there() -> None:
    base = httptools_impl.HttpToolsProtocol
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "on_message_complete",
    ):
        assert callable(getattr(base, name, None)), f"uvicorn's HttpToolsProtocol lost {name}"
    parameters = inspect.signature(base.__init__).parameters
    assert {"config", "server_state", "app_state", "_loop"} <= set(parameters)
    protocol_source = inspect.getsource(base)
    for attribute in ("parser", "loop", "client", "transport", "cycle", "server_state"):
        assert f"self.{attribute} =" in protocol_source, f"HttpToolsProtocol lost {attribute}"
    cycle = inspect.signature(httptools_impl.RequestResponseCycle.__init__).parameters
    assert {"message_event", "keep_alive"} <= set(cycle)
    source = inspect.getsource(httptools_impl.RequestResponseCycle)
    for attribute in ("response_started", "response_complete", "disconnected", "message_event"):
        assert f"self.{attribute} =" in source, f"RequestResponseCycle lost {attribute}"
    assert hasattr(ServerState(), "default_headers")
    assert issubclass(LimitedHttpToolsProtocol, base)


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes and whether it half-closed or closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.eof = False
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def statuses(self) -> list[int]:
        return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", self.written)]


class App:
    """Reads the body, optionally works for ``delay`` seconds, answers 200 with the body's size."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        size = 0
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await asyncio.sleep(self.delay)
        body = str(size).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def connect(app: App, **limits: Any) -> tuple[LimitedHttpToolsProtocol, FakeTransport]:
    values = {"max_header_bytes": LIMIT, "header_timeout": TIMEOUT, "body_timeout": TIMEOUT}
    cls = protocol_class(HttpLimits(**{**values, **limits}))
    config = uvicorn.Config(app, http=cls, log_config=None, lifespan="off")
    protocol = cls(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    assert isinstance(protocol, LimitedHttpToolsProtocol)
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def until(predicate: Any) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "not within the bound"
        await asyncio.sleep(0.01)


def head(size: int, path: bytes = b"/") -> bytes:
    """A GET whose head (request line, headers, blank line) is exactly ``size`` bytes."""
    start = b"GET " + path + b" HTTP/1.1\r\nhost: t\r\nx-pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


def error_of(transport: FakeTransport) -> dict[str, Any]:
    body = bytes(transport.written).split(b"\r\n\r\n", 1)[1]
    error: dict[str, Any] = json.loads(body)["errors"][0]
    return error


async def test_a_head_of_exactly_the_limit_is_served() -> None:
    protocol, transport = connect(app := App())
    assert len(head(LIMIT)) == LIMIT
    protocol.data_received(head(LIMIT))
    await until(lambda: transport.statuses() == [200])
    assert not transport.closed
    assert app.received[0]["type"] == "http.request"


@pytest.mark.parametrize("read_size", [LIMIT + 1, 100, 1], ids=["one read", "100 B", "1 B"])
async def test_a_head_over_the_limit_gets_431_however_it_is_read(
    read_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uvicorn_protocol, "LINGER_S", 0.05)
    protocol, transport = connect(app := App())
    data = head(LIMIT + 1)
    fed = 0
    while not transport.written:
        protocol.data_received(data[fed : fed + read_size])
        fed += read_size
    assert fed <= LIMIT + read_size  # refused as soon as the head passed the limit
    assert transport.statuses() == [431]
    assert error_of(transport)["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert f"{LIMIT} bytes" in error_of(transport)["message"]
    assert transport.eof  # the answer goes out before the close
    protocol.data_received(b"b" * 100_000)  # what still comes is dropped
    await until(lambda: transport.closed)
    assert transport.statuses() == [431]
    assert app.received == []  # the application never saw the request


async def test_pipelined_requests_each_get_the_whole_limit() -> None:
    protocol, transport = connect(App())
    protocol.data_received(head(LIMIT) + head(LIMIT) + head(LIMIT)[:100])
    await until(lambda: transport.statuses() == [200, 200])
    protocol.data_received(head(LIMIT)[100:])
    await until(lambda: transport.statuses() == [200, 200, 200])
    assert not transport.closed


async def test_a_connection_that_never_sends_is_closed_without_an_answer() -> None:
    _, transport = connect(App())
    await until(lambda: transport.closed)
    assert transport.written == b""


async def test_an_unfinished_head_gets_408() -> None:
    protocol, transport = connect(App())
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: t\r\n")
    await until(lambda: transport.eof)
    assert transport.statuses() == [408]
    assert error_of(transport)["extensions"]["code"] == "REQUEST_TIMEOUT"


async def test_an_unfinished_body_gets_408_and_the_application_a_disconnect() -> None:
    protocol, transport = connect(app := App())
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n12345")
    await until(lambda: transport.eof)
    assert transport.statuses() == [408]
    assert "body" in error_of(transport)["message"]
    await until(lambda: app.received and app.received[-1]["type"] == "http.disconnect")
    protocol.data_received(b"67890")  # too late: dropped
    await asyncio.sleep(TIMEOUT)
    assert transport.statuses() == [408]


async def test_a_body_trickled_byte_by_byte_is_cut_at_the_deadline() -> None:
    protocol, transport = connect(App())
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\n")
    for _ in range(1000):
        if transport.written:
            break
        protocol.data_received(b"x")
        await asyncio.sleep(TIMEOUT / 10)
    assert transport.statuses() == [408]


async def test_no_deadline_runs_while_the_application_works() -> None:
    protocol, transport = connect(App(delay=TIMEOUT * 3))
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\n12345")
    await until(lambda: transport.statuses() == [200])
    assert transport.written.endswith(b"5")
    # kept alive: a second request on the same connection, its head in two reads
    protocol.data_received(b"GET / HTTP/1.1\r\n")
    protocol.data_received(b"host: t\r\n\r\n")
    await until(lambda: transport.statuses() == [200, 200])
