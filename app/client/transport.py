"""The I/O shells: one pooled httpx client each, sending calls with retries and driving the
operations of ``operations.py``. Everything else they use is in ``protocol.py``."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from memvault.client.errors import MemvaultClientError
from memvault.client.protocol import (
    KEEPALIVE_EXPIRY_S,
    Call,
    Deadline,
    RetryPolicy,
    call_timeout,
    connection_error,
    parse_response,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from memvault.client.models import Page
    from memvault.client.operations import Op

T = TypeVar("T")

_LIMITS = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S)


class SyncTransport:
    """Sends calls over one ``httpx.Client`` (a pool of keep-alive connections)."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str],
        timeout: float | httpx.Timeout | None,
        retry: RetryPolicy,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.retry = retry
        self.call_timeout = call_timeout(timeout)
        self.http = httpx.Client(
            headers=headers, timeout=timeout, limits=_LIMITS, transport=transport
        )

    def execute(self, call: Call, deadline: Deadline) -> dict[str, Any]:
        """The call's data, trying again after transient failures where that is safe and
        ``deadline`` leaves time."""
        body = call.body()
        attempt = 0
        while True:
            try:
                try:
                    timeout = deadline.request_timeout(self.http.timeout)
                    response = self.http.post(self.url, content=body, timeout=timeout)
                except httpx.TransportError as exc:
                    raise connection_error(exc) from exc
                return parse_response(response.status_code, response.content)
            except MemvaultClientError as error:
                error.attempts = attempt + 1
                delay = self.retry.next_delay(error, call, attempt)
                if delay is None or not deadline.allows(delay):
                    raise
            time.sleep(delay)
            attempt += 1

    def run(self, op: Op[T]) -> T:
        """Drive an operation to its result within the client's timeout (all its requests)."""
        deadline = Deadline.after(self.call_timeout)
        try:
            call = next(op)
            while True:
                call = op.send(self.execute(call, deadline))
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            op.close()

    def chunks(self, page: Callable[[str | None], Op[Page[T]]]) -> Iterator[list[T]]:
        """Every item, a page's worth at a time, following keyset cursors to the end."""
        cursor: str | None = None
        while True:
            current = self.run(page(cursor))
            if current.items:
                yield current.items
            if current.next_cursor is None:
                return
            cursor = current.next_cursor

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    """Sends calls over one ``httpx.AsyncClient`` (a pool of keep-alive connections)."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str],
        timeout: float | httpx.Timeout | None,
        retry: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.retry = retry
        self.call_timeout = call_timeout(timeout)
        self.http = httpx.AsyncClient(
            headers=headers, timeout=timeout, limits=_LIMITS, transport=transport
        )

    async def execute(self, call: Call, deadline: Deadline) -> dict[str, Any]:
        """The call's data, trying again after transient failures where that is safe and
        ``deadline`` leaves time."""
        body = call.body()
        attempt = 0
        while True:
            try:
                try:
                    timeout = deadline.request_timeout(self.http.timeout)
                    response = await self.http.post(self.url, content=body, timeout=timeout)
                except httpx.TransportError as exc:
                    raise connection_error(exc) from exc
                return parse_response(response.status_code, response.content)
            except MemvaultClientError as error:
                error.attempts = attempt + 1
                delay = self.retry.next_delay(error, call, attempt)
                if delay is None or not deadline.allows(delay):
                    raise
            await asyncio.sleep(delay)
            attempt += 1

    async def run(self, op: Op[T]) -> T:
        """Drive an operation to its result within the client's timeout (all its requests)."""
        deadline = Deadline.after(self.call_timeout)
        try:
            call = next(op)
            while True:
                call = op.send(await self.execute(call, deadline))
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            op.close()

    async def chunks(self, page: Callable[[str | None], Op[Page[T]]]) -> AsyncIterator[list[T]]:
        """Every item, a page's worth at a time, following keyset cursors to the end."""
        cursor: str | None = None
        while True:
            current = await self.run(page(cursor))
            if current.items:
                yield current.items
            if current.next_cursor is None:
                return
            cursor = current.next_cursor

    async def aclose(self) -> None:
        await self.http.aclose()


TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)


class Shell(Generic[TransportT]):
    """The base of ``client.memory`` and ``client.user``, sync and async. They are thin: each
    method hands an operation of ``operations.py`` to the client's transport."""

    _transport: TransportT
    _page_size: int

    def __init__(self, transport: TransportT, *, page_size: int) -> None:
        self._transport = transport
        self._page_size = page_size
