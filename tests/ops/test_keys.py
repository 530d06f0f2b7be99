"""API keys as an operator meets them: what ``memvault keys`` prints, and what the server does
and logs when the first key appears and when the last one is revoked (``MEMVAULT_AUTH``)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from memvault.db import api_keys
from memvault.main import create_app
from tests.support.asgi import running
from tests.support.cli import clean_env, run
from tests.support.server import embedded_only

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.config import Settings

    Db = AsyncDatabase[dict[str, Any]]

TYPENAME = {"query": "{ __typename }"}


@contextlib.asynccontextmanager
async def serve(
    settings: Settings, client: AsyncMongoClient[dict[str, Any]], **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(dataclasses.replace(settings, **changes), client=client)
    async with running(app) as served:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://memvault.test") as http:
            yield http


async def status_without_a_key(http: httpx.AsyncClient) -> int:
    return (await http.post("/graphql", json=TYPENAME)).status_code


# -- the server: closed by the first key, for good unless MEMVAULT_AUTH=open ------------------


async def test_revoking_the_last_key_does_not_reopen_the_service(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], db: Db
) -> None:
    assert settings.auth == "auto"  # the default
    async with serve(settings, mongo_client) as http:
        assert await status_without_a_key(http) == 200
        doc, _ = await api_keys.create_key(db, project_id="acme", scope="write")
        assert await status_without_a_key(http) == 401
        await api_keys.revoke_key(db, key_id=doc["key_id"])
        assert await status_without_a_key(http) == 401
    async with serve(settings, mongo_client) as http:  # a restart does not reopen it either
        assert await status_without_a_key(http) == 401


async def test_auth_open_reopens_once_no_active_key_is_left(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], db: Db
) -> None:
    async with serve(settings, mongo_client, auth="open") as http:
        doc, _ = await api_keys.create_key(db, project_id="acme", scope="write")
        assert await status_without_a_key(http) == 401
        await api_keys.revoke_key(db, key_id=doc["key_id"])
        assert await status_without_a_key(http) == 200


async def test_keys_made_before_the_record_existed_close_the_service_too(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], db: Db
) -> None:
    """A store whose keys an older version made has no record of being closed: the server
    writes it when it sees an active key, so revoking that key does not reopen the store."""
    doc, _ = await api_keys.create_key(db, project_id="acme", scope="write")
    await db.service_state.delete_many({})
    async with serve(settings, mongo_client) as http:
        assert await status_without_a_key(http) == 401
        assert await db.service_state.count_documents({}) == 1
        await api_keys.revoke_key(db, key_id=doc["key_id"])
        assert await status_without_a_key(http) == 401


async def test_the_server_logs_the_switch_when_it_notices_it(
    settings: Settings,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    db: Db,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="memvault")
    async with serve(settings, mongo_client, auth="open") as http:
        await status_without_a_key(http)
        doc, _ = await api_keys.create_key(db, project_id="acme", scope="write")
        assert not [r for r in caplog.records if "an API key exists now" in r.message]
        await status_without_a_key(http)
        (closed,) = [r for r in caplog.records if "an API key exists now" in r.message]
        assert closed.levelno == logging.WARNING
        assert "'default'" in closed.message
        await api_keys.revoke_key(db, key_id=doc["key_id"])
        await status_without_a_key(http)
        (reopened,) = [r for r in caplog.records if "OPEN again" in r.message]
        assert "MEMVAULT_AUTH=open" in reopened.message


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    """The environment of commands on a new store in ``tmp_path``."""
    return clean_env(MEMVAULT_DATA_DIR=str(tmp_path / "data"))


def keys(store: dict[str, str], *args: str) -> str:
    result = run(["keys", *args], env=store)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
@embedded_only
def test_the_first_key_says_that_requests_need_keys_from_now_on(store: dict[str, str]) -> None:
    first = keys(store, "create", "--project", "acme", "--create").splitlines()
    assert first[0].startswith("created key ")
    said = "\n".join(first[1:-1])
    assert "first API key" in said
    assert "every request needs a key" in said
    assert "MEMVAULT_AUTH=open" in said
    assert "project 'default'" in said
    assert "does not reach it" in said
    assert first[-1].startswith(api_keys.KEY_PREFIX)  # the key is the last line

    second = keys(store, "create", "--project", "default").splitlines()
    assert "first API key" not in "\n".join(second)  # nothing changes with the second key
    assert len(second) == 3


@pytest.mark.slow
@embedded_only
def test_list_has_a_header_and_the_created_time(store: dict[str, str]) -> None:
    made = keys(store, "create", "--project", "acme", "--name", "ci bot", "--create")
    key_id = made.splitlines()[0].split()[2]
    header, row = keys(store, "list").splitlines()
    assert header.split() == ["KEY", "ID", "PROJECT", "SCOPE", "STATE", "CREATED", "(UTC)", "NAME"]
    assert re.fullmatch(
        rf"{key_id}\s+acme\s+write\s+active\s+\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\s+ci bot", row
    ), row
    assert header.index("CREATED") == row.index(row.split()[4])  # the columns line up
    (record,) = [json.loads(line) for line in keys(store, "list", "--json").splitlines()]
    assert record["key_id"] == key_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["created"])


@pytest.mark.slow
@embedded_only
def test_revoke_accepts_the_whole_key_and_says_the_store_stays_closed(
    store: dict[str, str],
) -> None:
    made = keys(store, "create", "--project", "acme", "--create").splitlines()
    key_id, key = made[0].split()[2], made[-1]
    revoked = keys(store, "revoke", key)
    assert f"revoked key {key_id}" in revoked
    assert key not in revoked  # the secret is not echoed
    assert "requests still need one" in revoked
    assert "revoked" in keys(store, "list").splitlines()[1]

    again = run(["keys", "revoke", key], env=store)
    assert again.returncode == 1
    assert again.stderr.strip() == "Error: no active key matches the given key"
