"""The ``memvault`` command: help, schema export, purge, and refusing bad settings."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
from pymongo import MongoClient

from memvault.cli import main as cli_main
from memvault.db.engine import EmbeddedEngine
from memvault.db.purge import purge
from memvault.db.queries import now_ms
from tests.support.cli import clean_env, run

EXTERNAL_URI = os.environ.get("MEMVAULT_MONGODB_URI") or None
COMMANDS = ["serve", "export-schema", "purge", "keys", "bench"]  # DESIGN.md's commands


def command_paths() -> list[list[str]]:
    """Every command and subcommand of ``memvault``, as argument lists."""
    paths: list[list[str]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name, command in sorted(group.commands.items()):
            paths.append([*prefix, name])
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])

    walk(cli_main, [])
    return paths


def test_help_lists_the_commands() -> None:
    result = run(["--help"])
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_each_command_has_help(path: list[str]) -> None:
    result = run([*path, "--help"])
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert " ".join(path) in result.stdout


def test_python_dash_m_app_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memvault", "--help"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


def test_export_schema_prints_the_sdl() -> None:
    from memvault.schema import schema

    result = run(["export-schema"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == schema.as_str() + "\n"
    assert "type Query" in result.stdout


def test_export_schema_writes_a_file(tmp_path: Path) -> None:
    from memvault.schema import schema

    target = tmp_path / "schema.graphql"
    result = run(["export-schema", "--output", str(target)])
    assert result.returncode == 0, result.stderr
    assert target.read_text() == schema.as_str() + "\n"


# -- purge -----------------------------------------------------------------------------------

COLLECTIONS = {"users": "user_id", "sessions": "session_id", "memories": "uuid"}


def _docs(key: str, deleted: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"project_id": "default", key: ident, "created_ms": 1, "updated_ms": 1, "deleted_ms": ms}
        for ident, ms in deleted.items()
    ]


def _seed(db: Any, recent_ms: int) -> None:
    """Per collection: one soft-deleted long ago, one soft-deleted just now, one live."""
    for name, key in COLLECTIONS.items():
        db[name].insert_many(_docs(key, {"old": 1, "recent": recent_ms, "live": 0}))


def _remaining(db: Any) -> dict[str, set[str]]:
    return {
        name: {doc[key] for doc in db[name].find({}, {key: 1})} for name, key in COLLECTIONS.items()
    }


async def test_purge_removes_only_what_was_deleted_long_enough_ago(db: Any) -> None:
    recent = now_ms()
    for name, key in COLLECTIONS.items():
        await db[name].insert_many(_docs(key, {"old": 1, "recent": recent, "live": 0}))

    assert await purge(db, older_than_ms=1000) == {"memories": 1, "sessions": 1, "users": 1}
    for name, key in COLLECTIONS.items():
        left = {doc[key] async for doc in db[name].find({}, {key: 1})}
        assert left == {"recent", "live"}, name

    assert await purge(db, older_than_ms=1000) == {"memories": 0, "sessions": 0, "users": 0}
    await asyncio.sleep(0.01)
    assert await purge(db, older_than_ms=0) == {"memories": 1, "sessions": 1, "users": 1}
    for name, key in COLLECTIONS.items():
        left = {doc[key] async for doc in db[name].find({}, {key: 1})}
        assert left == {"live"}, name


@pytest.fixture
def purge_target(tmp_path: Path) -> Any:
    """(environment for the command, a way to open the same database) on a data directory or,
    with an external MongoDB, on a database of its own."""
    if EXTERNAL_URI is not None:
        name = f"cli_{uuid.uuid4().hex[:12]}"
        env = clean_env(MEMVAULT_MONGODB_URI=EXTERNAL_URI, MEMVAULT_DATABASE=name)
        client: MongoClient[dict[str, Any]] = MongoClient(EXTERNAL_URI)
        try:
            yield env, lambda fn: fn(client[name])
        finally:
            client.drop_database(name)
            client.close()
        return

    data_dir = tmp_path / "data"

    def with_db(fn: Any) -> Any:
        engine = EmbeddedEngine(data_dir)
        engine.start()
        try:
            client: MongoClient[dict[str, Any]] = MongoClient(engine.uri)
            try:
                return fn(client["memvault"])
            finally:
                client.close()
        finally:
            engine.stop()

    yield clean_env(MEMVAULT_DATA_DIR=str(data_dir)), with_db


@pytest.mark.slow
def test_purge_command_on_a_store_with_nothing_to_purge(purge_target: Any, tmp_path: Path) -> None:
    env, with_db = purge_target
    with_db(lambda db: db["users"].insert_many(_docs("user_id", {"live": 0})))
    result = run(["purge", "--older-than", "0"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "purged": {"memories": 0, "sessions": 0, "users": 0},
        "older_than_seconds": 0,
    }
    if EXTERNAL_URI is None:
        data_dir = Path(env["MEMVAULT_DATA_DIR"])
        assert not (data_dir / "engine.json").exists(), "the command's engine was left running"
        assert not (data_dir / "engine.pid").exists(), "the command's engine was left running"


@pytest.mark.slow
def test_purge_command_removes_old_soft_deleted_data(purge_target: Any, tmp_path: Path) -> None:
    env, with_db = purge_target
    recent = now_ms()
    with_db(lambda db: _seed(db, recent))

    result = run(["purge", "--older-than", "3600"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["purged"] == {"memories": 1, "sessions": 1, "users": 1}
    assert report["older_than_seconds"] == 3600
    expected = {"recent", "live"}
    assert with_db(_remaining) == {name: expected for name in COLLECTIONS}

    time.sleep(0.01)
    result = run(["purge", "--older-than", "0"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["purged"] == {"memories": 1, "sessions": 1, "users": 1}
    assert with_db(_remaining) == {name: {"live"} for name in COLLECTIONS}


@pytest.mark.slow
def test_purge_defaults_to_purge_after(purge_target: Any, tmp_path: Path) -> None:
    env, with_db = purge_target
    with_db(lambda db: db["users"].insert_many(_docs("user_id", {"live": 0})))
    result = run(["purge"], env={**env, "MEMVAULT_PURGE_AFTER": "42"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["older_than_seconds"] == 42


def test_purge_refuses_a_negative_age(tmp_path: Path) -> None:
    result = run(["purge", "--older-than", "-1"], cwd=tmp_path)
    assert result.returncode != 0
    assert "--older-than" in result.stderr


@pytest.mark.skipif(EXTERNAL_URI is not None, reason="about the embedded engine")
def test_a_command_with_an_unusable_data_dir_says_why(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = clean_env(MEMVAULT_DATA_DIR=str(blocker / "data"))
    result = run(["keys", "create", "--project", "p", "--create"], env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot start the embedded engine" in result.stderr
    assert "Traceback" not in result.stderr


# -- bad settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "variable", "raw"),
    [
        (["serve"], "MEMVAULT_PORT", "abc"),
        (["serve"], "MEMVAULT_PORT", "70000"),
        (["serve"], "MEMVAULT_DATABASE", "no-dashes"),
        (["serve"], "MEMVAULT_DEFAULT_PAGE_SIZE", "1000"),
        (["purge"], "MEMVAULT_PURGE_AFTER", "-1"),
        (["purge"], "MEMVAULT_PURGE_INTERVAL", "-1"),
    ],
)
def test_invalid_settings_stop_commands_with_the_reason(
    args: list[str], variable: str, raw: str, tmp_path: Path
) -> None:
    env = clean_env(MEMVAULT_DATA_DIR=str(tmp_path / "data"), **{variable: raw})
    result = run(args, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists(), "nothing may start on invalid settings"
