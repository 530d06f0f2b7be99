"""The purge task removes old soft-deleted data by itself; unexpected errors are masked."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from memvault.config import Settings
from memvault.db import users as user_repo
from memvault.main import create_app
from tests.support.asgi import running
from tests.support.graphql import GraphQLClient


async def test_purge_task_hard_deletes_after_the_delay(
    settings: Settings,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    app = create_app(
        dataclasses.replace(settings, purge_interval=1, purge_after=0), client=mongo_client
    )
    async with running(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            gql = GraphQLClient(http)
            await gql.ok(
                'mutation { addMemories(input: {sessionId: "old", memories: [{roleType: USER, content: "x"}]}) { session { sessionId } } }'
            )
            await gql.ok(
                'mutation { addMemories(input: {sessionId: "kept", memories: [{roleType: USER, content: "y"}]}) { session { sessionId } } }'
            )
            await gql.ok('mutation { deleteSession(sessionId: "old") { deleted } }')
            for _ in range(40):
                if await db.sessions.count_documents({"session_id": "old"}) == 0:
                    break
                await asyncio.sleep(0.1)
            assert await db.sessions.count_documents({"session_id": "old"}) == 0
            assert await db.memories.count_documents({"session_id": "old"}) == 0
            assert await db.sessions.count_documents({"session_id": "kept"}) == 1
            assert await db.memories.count_documents({"session_id": "kept"}) == 1


async def test_purge_keeps_recent_deletions(
    settings: Settings,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    app = create_app(
        dataclasses.replace(settings, purge_interval=1, purge_after=3600), client=mongo_client
    )
    async with running(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            gql = GraphQLClient(http)
            await gql.ok('mutation { createUser(input: {userId: "u"}) { userId } }')
            await gql.ok('mutation { deleteUser(userId: "u") { deleted } }')
            await asyncio.sleep(1.5)
            assert await db.users.count_documents({"user_id": "u"}) == 1


async def test_unexpected_errors_are_masked_and_logged_with_the_request_id(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret driver detail: mongodb://admin:pw@db")

    monkeypatch.setattr(user_repo, "get_users", broken)
    with caplog.at_level(logging.ERROR, logger="memvault.graphql"):
        error = await gql.error('{ user(userId: "u1") { userId } }')
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    request_id = error["extensions"]["requestId"]
    assert error["message"] == f"Internal server error (request id {request_id})"
    assert "secret" not in str(error)
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
