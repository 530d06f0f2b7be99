"""memvault's HTTP/1.1 protocol for uvicorn: a request head size limit and head/body timeouts.

uvicorn's httptools protocol has neither: it buffers a header of any size (a 16 MB one was
accepted) and waits forever for a head or a body that a client never finishes. nginx's defaults
are the model: ``large_client_header_buffers 4 8k``, ``client_header_timeout 60s``,
``client_body_timeout 60s``.

This is the only module that depends on uvicorn's internals: it subclasses
``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`` and uses its parser callbacks
(``on_message_begin``, ``on_headers_complete``, ``on_message_complete``), its ``parser``,
``loop``, ``client``, ``transport``, ``cycle`` (``response_started``, ``response_complete``,
``disconnected``, ``message_event``) and ``server_state.default_headers``.
``tests/ops/test_uvicorn_protocol.py`` checks that surface by name, so a uvicorn release that
changes it fails there first (pyproject.toml keeps uvicorn on the tested minor series).
"""

from __future__ import annotations

import http
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from memvault.errors import PayloadTooLarge, RequestTimeout

if TYPE_CHECKING:
    import asyncio

    from memvault.config import Settings
    from memvault.errors import MemvaultError

log = logging.getLogger("memvault.http")

# After a refusal, what the client still sends is read and dropped for this long before the
# close: closing with unread data would reset the connection, and the client could lose the
# answer (nginx's "lingering close").
LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What a client may send, and how slowly."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
        )


def protocol_class(limits: HttpLimits) -> type[asyncio.Protocol]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``."""

    class MemvaultHttpProtocol(LimitedHttpToolsProtocol):
        pass

    MemvaultHttpProtocol.limits = limits
    return MemvaultHttpProtocol


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with:

    - a head limit: bytes read while a request's head (request line and headers) is incomplete are
      counted, and past ``max_header_bytes`` the client gets 431 and the connection closes, before
      httptools buffers more. (Bytes of a pipelined request that follow a complete request in the
      same read are counted from the next read on: the parser never holds more than twice the
      limit.)
    - a head deadline: ``header_timeout`` seconds from connecting, or from the first byte of a
      request on a kept-alive connection, to the end of the head; then 408 (or, for a connection
      that never sent a byte, just the close).
    - a body deadline: ``body_timeout`` seconds from the end of the head to the end of the body
      (the whole body, so a body trickled a byte at a time is cut too); then 408 and the close.

    No deadline runs while the application works on a request; idle kept-alive connections are
    closed by uvicorn's own ``timeout_keep_alive``.
    """

    limits: ClassVar[HttpLimits]

    _refused = False
    _in_head = True  # reading a head (or waiting for the first byte of one)
    _head_started = False  # a byte of the current head has arrived
    _in_body = False
    _head_room = 0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_room = self.limits.max_header_bytes
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # Feed no more than the room the head has left; if the head is still incomplete after
        # that, it is too large.
        while self._in_head and len(data) > self._head_room:
            room = self._head_room
            self._head_room = 0
            super().data_received(data[:room])
            data = data[room:]
            if self.transport.is_closing():
                return
            if self._in_head and self._head_room == 0:  # no request completed and made room
                self._refuse_head()
                return
        if self._in_head:
            self._head_room -= len(data)
        super().data_received(data)
        if self._deadline is None and not self.transport.is_closing():
            if self._in_head and self._head_started:
                self._arm(self.limits.header_timeout)
            elif self._in_body:
                self._arm(self.limits.body_timeout)

    def on_message_begin(self) -> None:
        self._head_started = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_started = False
        self._in_body = not self.parser.should_upgrade()  # a WebSocket has its own protocol
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._in_head = True
        self._head_room = self.limits.max_header_bytes
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._deadline_passed)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_body:
            what = f"request body not received within {self.limits.body_timeout:g}s"
        elif self._head_started:
            what = f"request headers not received within {self.limits.header_timeout:g}s"
        else:  # connected and never sent a byte: nobody to answer
            self.transport.close()
            return
        cycle = self.cycle if self._in_body else None
        if cycle is not None and cycle.response_started:
            self.transport.close()  # the application answered already; stop waiting for the rest
            return
        log.info("408 to %s: %s", _peer(self.client), what)
        self._refuse(408, RequestTimeout(what))

    def _refuse_head(self) -> None:
        limit = self.limits.max_header_bytes
        log.info("431 to %s: request head over %d bytes", _peer(self.client), limit)
        self._refuse(431, PayloadTooLarge(f"request headers are larger than {limit} bytes"))

    def _refuse(self, status: int, error: MemvaultError) -> None:
        """Answer ``status`` with an error in the API's shape, and close the connection."""
        self._refused = True
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The application may still be waiting for the body: it now reads a disconnect, and
            # anything it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        body = json.dumps(error.as_response(), separators=(",", ":")).encode()
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        transport = self.transport
        transport.write(b"".join(head) + body)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        transport.resume_reading()
        self._deadline = self.loop.call_later(LINGER_S, transport.close)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"
