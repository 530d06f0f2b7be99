"""The database commands the app sends: counted (``CommandCounter``, ``listened_app``) or one of
them held back (``Hold``) to force an interleaving."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

import httpx
from pymongo import monitoring
from pymongo.asynchronous.collection import AsyncCollection

from memvault.db.engine import connect
from memvault.main import create_app
from tests.support.asgi import running
from tests.support.graphql import GraphQLClient

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import pytest

    from memvault.config import Settings


class CommandCounter(monitoring.CommandListener):
    """Counts the database commands the app sends (not the handshake or monitoring)."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in {"hello", "ismaster", "isMaster", "endSessions"}:
            self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@contextlib.asynccontextmanager
async def listened_app(
    mongo_uri: str, settings: Settings, listener: monitoring.CommandListener
) -> AsyncIterator[GraphQLClient]:
    """The app on a client of its own that reports its commands to ``listener``, with a warm
    key cache as in service (so what a test counts is the query's commands, not the auth
    check's)."""
    client = connect(mongo_uri, event_listeners=[listener])
    app = create_app(dataclasses.replace(settings, auth_cache_seconds=60), client=client)
    try:
        async with running(app) as served:
            transport = httpx.ASGITransport(app=served)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://memvault.test"
            ) as http:
                yield GraphQLClient(http)
    finally:
        await client.close()


class Hold:
    """Fault injection in process: the first database call of ``method`` that ``matches`` is held
    back until ``release`` is set, as a slow network, a GC pause or a stalled process would hold
    it; ``reached`` is set when it gets there and ``done`` once it has run. This forces, in a
    fixed order, the interleavings that random timing reaches only rarely."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, method: str, matches: Any) -> None:
        original = getattr(AsyncCollection, method)
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.done = asyncio.Event()

        async def held(coll: AsyncCollection[Any], *args: Any, **kwargs: Any) -> Any:
            if self.reached.is_set() or not matches(coll.name, *args):
                return await original(coll, *args, **kwargs)
            self.reached.set()
            await asyncio.wait_for(self.release.wait(), 30)
            try:
                return await original(coll, *args, **kwargs)
            finally:
                self.done.set()

        monkeypatch.setattr(AsyncCollection, method, held)


async def once(event: asyncio.Event, coro: Any) -> Any:
    """Run ``coro`` once ``event`` is set."""
    await asyncio.wait_for(event.wait(), 30)
    return await coro


async def then_set(event: asyncio.Event, coro: Any) -> Any:
    """Run ``coro``, then set ``event`` (also when it fails)."""
    try:
        return await coro
    finally:
        event.set()


def deletion_cascade_of(session_id: str) -> Any:
    """The update that soft-deletes a session's memories with the deletion's token."""

    def matches(name: str, query: dict[str, Any], update: dict[str, Any], *rest: Any) -> bool:
        token = update.get("$set", {}).get("deletion_id")
        return name == "memories" and query.get("session_id") == session_id and bool(token)

    return matches


def memory_count_increment(
    name: str, query: dict[str, Any], update: dict[str, Any], *rest: Any
) -> bool:
    """The update that adds an addMemories call's memories to the session's count."""
    return name == "sessions" and update.get("$inc", {}).get("memory_count", 0) > 0
