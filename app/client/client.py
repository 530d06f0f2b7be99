"""``MemvaultClient`` and ``AsyncMemvaultClient``: Zep's client shape over memvault's GraphQL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from memvault.client import protocol
from memvault.client.memory import AsyncMemoryClient, MemoryClient
from memvault.client.operations import DEFAULT_PAGE_SIZE
from memvault.client.transport import AsyncTransport, SyncTransport
from memvault.client.user import AsyncUserClient, UserClient

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
API_KEY_VARIABLE = "MEMVAULT_API_KEY"


class _Options:
    """The constructor arguments both clients share, checked once."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        page_size: int,
        extra_headers: Mapping[str, str] | None,
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be 1-1000 (the server's MEMVAULT_MAX_PAGE_SIZE)")
        self.url = protocol.graphql_url(base_url)
        self.headers = protocol.headers(api_key or os.environ.get(API_KEY_VARIABLE), extra_headers)
        self.retry = protocol.RetryPolicy(
            max_retries=max_retries, backoff=backoff, max_backoff=max_backoff
        )
        self.page_size = page_size


class MemvaultClient:
    """A memvault client with Zep's shape: ``client.memory`` (sessions and messages) and
    ``client.user``. One pooled HTTP connection per client; use it as a context manager, or
    ``close()`` it.

    ``api_key`` (default: the ``MEMVAULT_API_KEY`` environment variable) goes in
    ``Authorization: Bearer``. ``timeout`` (seconds, default 30) bounds each call as a whole:
    every request it sends, retries and the waits between them included; past it the call raises
    ``MemvaultConnectionError``. ``None`` waits forever; an ``httpx.Timeout`` sets httpx's limits
    of each request instead (no bound on the whole call). A listing's pages are a call each.
    Transient failures (connection errors, timeouts, SERVICE_UNAVAILABLE, HTTP 502-504) are
    retried up to ``max_retries`` times with exponential backoff (``backoff`` seconds doubling,
    at most ``max_backoff``), for calls that are safe to repeat; creates and deletes are retried
    only when the server surely did not run them. ``page_size`` is the most items asked for in
    one request (the server's ``MEMVAULT_MAX_PAGE_SIZE``); longer listings take several.
    ``transport`` replaces httpx's network transport (e.g. ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S,
        *,
        max_retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        page_size: int = DEFAULT_PAGE_SIZE,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        options = _Options(
            base_url,
            api_key,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            page_size=page_size,
            extra_headers=headers,
        )
        self.base_url = options.url
        self._transport = SyncTransport(
            options.url,
            headers=options.headers,
            timeout=timeout,
            retry=options.retry,
            transport=transport,
        )
        self.memory = MemoryClient(self._transport, page_size=options.page_size)
        self.user = UserClient(self._transport, page_size=options.page_size)

    def close(self) -> None:
        """Close the pooled connections."""
        self._transport.close()

    def __enter__(self) -> MemvaultClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncMemvaultClient:
    """``MemvaultClient`` for asyncio: the same arguments and methods, awaitable (listings are
    async iterators). Use it with ``async with``, or ``await client.aclose()``."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S,
        *,
        max_retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        page_size: int = DEFAULT_PAGE_SIZE,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = _Options(
            base_url,
            api_key,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            page_size=page_size,
            extra_headers=headers,
        )
        self.base_url = options.url
        self._transport = AsyncTransport(
            options.url,
            headers=options.headers,
            timeout=timeout,
            retry=options.retry,
            transport=transport,
        )
        self.memory = AsyncMemoryClient(self._transport, page_size=options.page_size)
        self.user = AsyncUserClient(self._transport, page_size=options.page_size)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._transport.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncMemvaultClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
