"""The README's "Coming from Zep" examples run, in order, against a live server, and the Zep
surface they promise exists on both clients."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memvault.client import AsyncMemvaultClient, MemvaultClient, NotFoundError
from tests.support.readme import README, fenced
from tests.support.server import live_server

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.server import LiveServer

README_URL = "http://127.0.0.1:8000"


def zep_section() -> str:
    start = README.index("## Coming from Zep\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def python_blocks() -> list[str]:
    return fenced("python", zep_section())


@pytest.fixture
def server(mongo_uri: str, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(mongo_uri, tmp_path) as live:
        yield live


def test_the_section_sits_before_the_choices() -> None:
    assert README.index("## Coming from Zep") < README.index("## Choices where the design is")
    blocks = python_blocks()
    assert len(blocks) >= 5
    imports = [line for b in blocks for line in b.splitlines() if "import" in line]
    assert all("memvault.client" in line or line == "import asyncio" for line in imports), imports


def test_the_examples_run_in_order(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    for block in python_blocks():
        code = block.replace(README_URL, server.url)
        exec(compile(code, "README.md", "exec"), namespace)  # the README's own examples
    printed = capsys.readouterr().out

    assert namespace["user"].email == "ada@example.com"
    created_at = namespace["session"].created_at
    assert created_at is not None
    assert created_at.utcoffset() is not None
    assert [m.content for m in namespace["memory"].messages] == [
        "With carries, column by column.",
        "Show me.",
    ]
    assert "session 'no-such-chat' not found" in printed
    assert "['ada-chat-1', 'ada-chat-2']" in printed  # the async block's user.get_sessions

    with MemvaultClient(server.url) as client:
        ada = client.user.get("ada")
        assert (ada.first_name, ada.last_name, ada.metadata) == ("Ada", "Lovelace", {})
        assert client.memory.get_session("ada-chat-1").metadata == {
            "topic": "engines",
            "mood": "curious",
        }
        assert [m.role_type for m in client.memory.get("ada-chat-1").messages] == [
            "user",
            "assistant",
            "user",
        ]
        with pytest.raises(NotFoundError):
            client.memory.get_session("ada-chat-2")  # deleted, softly:
    assert len(server.stored("memories", {"session_id": "ada-chat-2"})) == 1


ZEP_MEMORY = [
    "add_session", "get_session", "update_session", "delete", "delete_memory", "list_sessions",
    "list_all_sessions", "add", "add_memory", "get", "get_memory", "update_message_metadata",
]  # fmt: skip
ZEP_USER = ["add", "get", "update", "delete", "get_sessions", "list", "list_chunked"]
ZEP_ASYNC_ALIASES = {
    "memory": ["aadd_session", "aget_session", "aupdate_session", "adelete_memory",
               "alist_sessions", "alist_all_sessions", "aadd_memory", "aget_memory"],
    "user": ["aadd", "aget", "aupdate", "adelete", "aget_sessions", "alist", "alist_chunked"],
}  # fmt: skip


def test_both_clients_have_the_zep_surface() -> None:
    sync, asynchronous = MemvaultClient(), AsyncMemvaultClient()
    iterators = {"list_all_sessions", "list_chunked"}
    for part, names in (("memory", ZEP_MEMORY), ("user", ZEP_USER)):
        for name in names:
            sync_method = getattr(getattr(sync, part), name)
            async_method = getattr(getattr(asynchronous, part), name)
            assert not inspect.iscoroutinefunction(sync_method), name
            assert inspect.iscoroutinefunction(async_method) or name in iterators, name
            sync_params = list(inspect.signature(sync_method).parameters)
            assert list(inspect.signature(async_method).parameters) == sync_params, name
        for alias in ZEP_ASYNC_ALIASES[part]:
            assert callable(getattr(getattr(asynchronous, part), alias)), alias
    sync.close()
    asyncio.run(asynchronous.aclose())
