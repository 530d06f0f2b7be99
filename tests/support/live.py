"""A ``graphql-transport-ws`` client over a real WebSocket (the ``websockets`` package), for
tests of subscriptions against ``memvault serve``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import TYPE_CHECKING, Any

import websockets
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from websockets.asyncio.client import ClientConnection

PROTOCOL = "graphql-transport-ws"
WAIT_S = 10.0

MEMORY_ADDED = """
subscription Memories($sessionId: String!, $afterSeq: Int) {
  memoryAdded(sessionId: $sessionId, afterSeq: $afterSeq) { uuid seq content }
}"""
SESSION_CHANGED = """
subscription Changes($sessionId: String!) {
  sessionChanged(sessionId: $sessionId) { kind session { sessionId userId metadata } }
}"""


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/graphql"


class LiveClient:
    """One connection: ``connection_init`` sent and acknowledged, then subscriptions whose
    messages are sorted into one queue per operation id by a reader task."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.ids = (str(n) for n in itertools.count(1))
        self.closed: asyncio.Future[tuple[int | None, str]] = (
            asyncio.get_running_loop().create_future()
        )
        self.others: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # pong, etc.
        self.reader: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        http_url: str,
        *,
        payload: dict[str, Any] | None = None,
        init: bool = True,
        headers: dict[str, str] | None = None,
        read: bool = True,
        **options: Any,
    ) -> AsyncIterator[LiveClient]:
        """Connect to ``http_url``'s ``/graphql`` and (with ``init``) initialise with
        ``payload``; ``read=False`` leaves incoming messages unread (a slow consumer)."""
        async with websockets.connect(
            ws_url(http_url),
            subprotocols=[PROTOCOL],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=WAIT_S,
            **options,
        ) as ws:
            client = cls(ws)
            if init:
                await client.send({"type": "connection_init", "payload": payload or {}})
                ack = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
                assert ack["type"] == "connection_ack", ack
            if read:
                client.reader = asyncio.create_task(client._read())
            try:
                yield client
            finally:
                if client.reader is not None:
                    client.reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await client.reader

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        """Start an operation; its id."""
        operation_id = next(self.ids)
        self.queues[operation_id] = asyncio.Queue()
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        await self.send({"id": operation_id, "type": "subscribe", "payload": payload})
        return operation_id

    async def complete(self, operation_id: str) -> None:
        await self.send({"id": operation_id, "type": "complete"})

    async def message(self, operation_id: str, wait: float = WAIT_S) -> dict[str, Any]:
        """The next message of an operation (``next``, ``error`` or ``complete``)."""
        queue = self.queues[operation_id]
        getting = asyncio.ensure_future(queue.get())
        done, _ = await asyncio.wait(
            {getting, self.closed}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        if getting in done:
            return getting.result()
        getting.cancel()
        if self.closed in done:
            raise AssertionError(f"connection closed: {self.closed.result()}")
        raise TimeoutError(f"no message for operation {operation_id} in {wait} s")

    async def data(self, operation_id: str, wait: float = WAIT_S) -> dict[str, Any]:
        """The data of the operation's next ``next`` message (which must have no errors)."""
        message = await self.message(operation_id, wait)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        data: dict[str, Any] = message["payload"]["data"]
        return data

    async def memories(self, operation_id: str, count: int) -> list[dict[str, Any]]:
        """The next ``count`` memories of a ``memoryAdded`` operation."""
        return [(await self.data(operation_id))["memoryAdded"] for _ in range(count)]

    async def silent(self, operation_id: str, seconds: float = 0.5) -> bool:
        """Whether no message for the operation comes within ``seconds``."""
        try:
            message = await self.message(operation_id, seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected message: {message}")

    async def close_code(self, wait: float = WAIT_S) -> tuple[int | None, str]:
        """(code, reason) the server closed the connection with."""
        if self.reader is None:  # not reading: read until the close
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(wait):
                    while True:
                        await self.ws.recv()
            return self._code()
        return await asyncio.wait_for(asyncio.shield(self.closed), wait)

    def _code(self) -> tuple[int | None, str]:
        return self.ws.close_code, self.ws.close_reason or ""

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                queue = self.queues.get(message.get("id", ""))
                await (queue or self.others).put(message)
        except ConnectionClosed:
            pass
        if not self.closed.done():
            self.closed.set_result(self._code())
