"""The README's examples run, and its commands are the ones CI and the tests use."""

from __future__ import annotations

import shlex
from typing import Any

from tests.support.graphql import GraphQLClient
from tests.support.readme import ROOT, fenced


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = next(block.strip() for block in fenced("sh") if "pytest" in block)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_serve_command_installs_and_serves() -> None:
    serve = next(block.strip() for block in fenced("sh") if "memvault serve" in block)
    assert "pip install" in serve
    assert serve.endswith("memvault serve")


def test_commands_install_only_what_the_locks_pin() -> None:
    """Each ``pip install`` is a lock, or memvault itself with ``--no-deps``: nothing resolved
    beside the locks (and the runtime lock for serving, the dev lock for testing)."""
    serve = next(block.strip() for block in fenced("sh") if "memvault serve" in block)
    test = next(block.strip() for block in fenced("sh") if "pytest" in block)
    for command, lock in ((serve, "requirements.lock"), (test, "requirements-dev.lock")):
        installs = [
            args[2:]
            for args in (shlex.split(part) for part in command.split("&&"))
            if args[:2] == [".venv/bin/pip", "install"]
        ]
        assert len(installs) == 2, command
        assert [arg for arg in installs[0] if arg != "-q"] == ["-r", lock]
        assert installs[1][-2:] == ["-e", "."]
        assert {"--no-deps", "--no-build-isolation"} <= set(installs[1])


async def test_walkthrough_runs_in_order(gql: GraphQLClient) -> None:
    results: list[dict[str, Any]] = []
    for block in fenced("graphql"):
        results.append(await gql.ok(block))
    (created, updated, upserted, session, upserted_session, added, retried, edited, nested,
     listed, deleted, restored, erased) = results  # fmt: skip
    assert created["createUser"]["metadata"] == {
        "plan": "pro",
        "prefs": {"theme": "dark", "lang": "en"},
    }
    assert updated["updateUser"]["metadata"] == {
        "plan": "pro",
        "prefs": {"lang": "en", "tz": "UTC"},
    }
    assert updated["updateUser"]["firstName"] == "Ada"
    assert upserted["upsertUser"]["metadata"] == {"plan": "free"}
    assert session["createSession"]["userId"] == "ada"
    assert upserted_session["updateSession"]["metadata"] == {"topic": "engines", "mood": "curious"}
    assert [m["seq"] for m in added["addMemories"]["memories"]] == [1, 2, 3]
    assert added["addMemories"]["session"]["memoryCount"] == 3
    assert retried["addMemories"]["memories"] == [
        {"uuid": "m-3", "seq": 3},
        {"uuid": "m-4", "seq": 4},
    ]
    assert edited["updateMemory"]["metadata"] == {"reviewed": True}
    assert edited["deleteMemory"]["deleted"] is True
    window = nested["user"]["sessions"]["nodes"][0]
    assert window["memoryCount"] == 3
    assert [m["seq"] for m in window["memories"]["nodes"]] == [1, 2, 4]
    assert [e["node"]["userId"] for e in listed["users"]["edges"]] == ["ada"]
    assert listed["sessions"]["nodes"] == [{"sessionId": "ada-1", "user": {"userId": "ada"}}]
    assert deleted["deleteSession"]["deleted"] is True
    assert [m["uuid"] for m in restored["restoreSession"]["memories"]["nodes"]] == [
        "m-1",
        "m-2",
        "m-4",
    ]
    assert erased == {"deleteUser": {"deleted": True}, "forgetUser": {"deleted": True}}
    assert await gql.ok('{ users { totalCount } sessions { totalCount } memory(uuid: "m-1") { uuid } }') == {
        "users": {"totalCount": 0}, "sessions": {"totalCount": 0}, "memory": None,
    }  # fmt: skip
