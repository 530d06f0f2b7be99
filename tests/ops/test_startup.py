"""Start-up and command failures as a user meets them: one line naming the cause and the setting,
exit code 1, a traceback only at ``MEMVAULT_LOG_LEVEL=DEBUG``; and "ready" only once the port is
bound."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

from memvault.db.engine import free_port
from tests.support.cli import clean_env, run

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.cli import CompletedProcess


def one_line_failure(result: CompletedProcess, *needles: str) -> str:
    """The failure's line (the last one on stderr), after checking it is the only error."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == error_lines[0], result.stderr
    for needle in needles:
        assert needle in error_lines[0], error_lines[0]
    return error_lines[0]


@pytest.fixture
def closed_uri() -> str:
    """A MongoDB URI on a port where nothing listens."""
    return f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"


@pytest.mark.parametrize("args", [["serve"], ["purge"], ["keys", "list"]], ids=" ".join)
def test_an_unreachable_mongodb_is_one_line_naming_the_uri(
    args: list[str], closed_uri: str, tmp_path: Path
) -> None:
    env = clean_env(MEMVAULT_MONGODB_URI=closed_uri, MEMVAULT_DB_TIMEOUT_MS="300")
    result = run(args, env=env, cwd=tmp_path)
    one_line_failure(result, "cannot reach", "MEMVAULT_MONGODB_URI", "MEMVAULT_DB_TIMEOUT_MS")


@pytest.mark.parametrize("args", [["serve"], ["purge"]], ids=" ".join)
def test_a_uri_that_is_not_mongodb_names_the_variable(args: list[str], tmp_path: Path) -> None:
    env = clean_env(MEMVAULT_MONGODB_URI="http://localhost")
    result = run(args, env=env, cwd=tmp_path)
    one_line_failure(result, "MEMVAULT_MONGODB_URI", "mongodb://")


def test_export_schema_to_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "x.graphql"
    result = run(["export-schema", "-o", str(target)], cwd=tmp_path)
    one_line_failure(result, "--output", str(target), "No such file or directory")


def test_debug_log_level_adds_the_traceback(tmp_path: Path) -> None:
    env = clean_env(MEMVAULT_MONGODB_URI="http://localhost", MEMVAULT_LOG_LEVEL="DEBUG")
    result = run(["purge"], env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error: MEMVAULT_MONGODB_URI")


@pytest.fixture
def port_in_use() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        yield taken.getsockname()[1]


def test_a_port_in_use_fails_before_anything_starts(port_in_use: int, tmp_path: Path) -> None:
    env = clean_env(MEMVAULT_DATA_DIR=str(tmp_path / "data"))
    result = run(["serve", "--port", str(port_in_use)], env=env, cwd=tmp_path)
    one_line_failure(result, f"127.0.0.1:{port_in_use}", "MEMVAULT_PORT", "in use")
    assert "is ready" not in result.stderr
    assert not (tmp_path / "data").exists(), "the engine started although the port was taken"


def test_an_unknown_host_fails_before_anything_starts(tmp_path: Path) -> None:
    env = clean_env(MEMVAULT_DATA_DIR=str(tmp_path / "data"), MEMVAULT_HOST="not-a-host")
    result = run(["serve", "--port", str(free_port())], env=env, cwd=tmp_path)
    one_line_failure(result, "not-a-host", "MEMVAULT_HOST")
    assert "is ready" not in result.stderr
    assert not (tmp_path / "data").exists()


# -- typos and data directories without a store -----------------------------------------------


def warnings_about(stderr: str, variable: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line and variable in line]


def test_an_unknown_variable_is_named_with_the_nearest_setting(
    port_in_use: int, tmp_path: Path
) -> None:
    env = clean_env(
        MEMVAULT_DATA_DIR=str(tmp_path / "data"),
        MEMVAULT_PROT="8305",
        MEMVAULT_ZZZ="1",
        MEMVAULT_API_KEY="the client's",
    )
    for args in (["serve", "--port", str(port_in_use)], ["keys", "list"]):
        result = run(args, env=env, cwd=tmp_path)
        (typo,) = warnings_about(result.stderr, "MEMVAULT_PROT")
        assert "did you mean MEMVAULT_PORT?" in typo, typo
        (stray,) = warnings_about(result.stderr, "MEMVAULT_ZZZ")
        assert "not a memvault setting" in stray
        assert "did you mean" not in stray
        assert not warnings_about(result.stderr, "MEMVAULT_API_KEY")


@pytest.mark.parametrize(
    "args",
    [
        ["purge"],
        ["keys", "list"],
        ["keys", "revoke", "abc123"],
        ["keys", "create", "--project", "acme"],
        ["documents", "add", "query.graphql"],
    ],
    ids=" ".join,
)
def test_one_off_commands_refuse_a_data_dir_without_a_store(
    args: list[str], tmp_path: Path
) -> None:
    (tmp_path / "query.graphql").write_text("{ __typename }")
    typo = tmp_path / "dta"
    env = clean_env(MEMVAULT_DATA_DIR=str(typo))
    result = run(args, env=env, cwd=tmp_path)
    one_line_failure(result, f"MEMVAULT_DATA_DIR={typo}", "no memvault store")
    assert not typo.exists(), "a store was created in the mistyped directory"


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [["keys", "create", "--project", "acme"], ["documents", "add", "query.graphql"]],
    ids=" ".join,
)
def test_create_makes_the_store_when_told_to(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "query.graphql").write_text("{ __typename }")
    env = clean_env(MEMVAULT_DATA_DIR=str(tmp_path / "new"))
    assert run([*args, "--create"], env=env, cwd=tmp_path).returncode == 0
    listed = run(["keys", "list"], env=env, cwd=tmp_path)  # the store is there now
    assert listed.returncode == 0, listed.stderr
