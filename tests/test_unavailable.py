"""A database that stops answering: SERVICE_UNAVAILABLE quickly, no driver text, then recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path

import httpx
import pytest

from memvault.config import Settings
from memvault.db.engine import EmbeddedEngine, connect
from memvault.main import create_app

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MEMVAULT_MONGODB_URI")), reason="stops and starts its own embedded engine"
)


async def test_outage_gives_service_unavailable_then_recovers(tmp_path: Path) -> None:
    engine = EmbeddedEngine(tmp_path / "engine")
    engine.start()
    client = connect(engine.uri, timeout_ms=500)
    settings = dataclasses.replace(
        Settings(database="outage", data_dir=tmp_path, purge_interval=0),
        db_timeout_ms=500,
        auth_cache_seconds=3600,  # the key check is cached: the outage reaches GraphQL
    )
    app = create_app(settings, client=client)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                write = {"query": 'mutation { createUser(input: {userId: "before"}) { userId } }'}
                assert (await http.post("/graphql", json=write)).json()["data"]
                engine.stop()

                started = time.monotonic()
                body = (
                    await http.post("/graphql", json={"query": "{ users { totalCount } }"})
                ).json()
                assert time.monotonic() - started < 5
                assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                assert "requestId" in body["errors"][0]["extensions"]
                assert "ServerSelection" not in str(body)
                assert str(engine.port) not in str(body)
                assert (await http.get("/readyz")).status_code == 503

                engine.start()
                for _ in range(50):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                body = (
                    await http.post("/graphql", json={"query": "{ users { nodes { userId } } }"})
                ).json()
                assert body == {"data": {"users": {"nodes": [{"userId": "before"}]}}}
    finally:
        await client.close()
        engine.stop()
