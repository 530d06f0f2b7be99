"""The README's browser example ("Live updates") as users copy it, with the real ``graphql-ws``
npm client, run by Node (``tests/support/live_client.mjs``) against ``memvault serve`` with keys:
stored memories then live ones in seq order; the server restarted (SIGTERM: close 1012) while
subscribed, and the client reconnects by itself and goes on with no gap and no repeat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from memvault.db import api_keys
from tests.support import npm_live
from tests.support.live import ws_url
from tests.support.readme import fenced, section
from tests.support.server import live_server, uid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from pymongo.asynchronous.database import AsyncDatabase

    from tests.support.server import LiveServer

LIVE_CLIENT = Path(__file__).resolve().parents[1] / "support" / "live_client.mjs"
WAIT_S = 60.0  # generous: graphql-ws waits 1.3 to 4 s before its first retry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="no node and npm (.ci/run installs them in CI)",
    ),
]


class NodeClient:
    """The Node process and the JSON lines it printed so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    def memories(self) -> list[dict[str, Any]]:
        return [line["memory"] for line in self.lines if "memory" in line]

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Read lines until ``predicate()`` holds; fail with what was printed if it does not."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(WAIT_S):
                while not predicate():
                    raw = await self.process.stdout.readline()
                    if not raw:
                        break
                    self.lines.append(json.loads(raw))
        except TimeoutError:
            pass
        if not predicate():
            stderr = await self._stderr()
            pytest.fail(f"Node client: no {what}; printed {self.lines}\n{stderr}")

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        if self.process.returncode is None:
            self.process.kill()
        with contextlib.suppress(TimeoutError):
            return (await asyncio.wait_for(self.process.stderr.read(), 5)).decode()
        return ""


@contextlib.asynccontextmanager
async def readme_example(
    server: LiveServer, key: str, session_id: str, workdir: Path
) -> AsyncIterator[NodeClient]:
    """The README's ```js block, its url pointed at ``server``, following ``session_id`` in
    Node; killed afterwards."""
    await asyncio.to_thread(npm_live.install)
    (example,) = fenced("js", section("Live updates"))
    assert 'url: "ws://localhost:8000/graphql"' in example
    module = workdir / "example.mjs"
    module.write_text(
        example.replace("ws://localhost:8000/graphql", ws_url(server.url))
        + "\nexport { client, follow };\n"
    )
    (workdir / "node_modules").symlink_to(npm_live.NODE_MODULES, target_is_directory=True)
    process = await asyncio.create_subprocess_exec(
        "node",
        str(LIVE_CLIENT),
        str(module),
        session_id,
        env={"PATH": "/usr/bin:/bin", "API_KEY": key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeClient(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def add(http: httpx.AsyncClient, session_id: str, *contents: str) -> list[int]:
    """Append one memory per content; their seqs."""
    response = await http.post(
        "/graphql",
        json={
            "query": "mutation($s: String!, $m: [MemoryInput!]!) {"
            " addMemories(input: {sessionId: $s, memories: $m}) { memories { seq } } }",
            "variables": {
                "s": session_id,
                "m": [{"roleType": "USER", "content": c} for c in contents],
            },
        },
    )
    body = response.json()
    assert not body.get("errors"), body
    return [m["seq"] for m in body["data"]["addMemories"]["memories"]]


async def test_the_readme_browser_example_follows_a_session_across_a_server_restart(
    mongo_uri: str, tmp_path: Path, db: AsyncDatabase[dict[str, Any]]
) -> None:
    _, key = await api_keys.create_key(db, project_id="acme", scope="write")
    session = uid("s")
    with live_server(mongo_uri, tmp_path / "server", MEMVAULT_DATABASE=db.name) as server:
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx.AsyncClient(base_url=server.url, headers=headers, timeout=20) as http,
            readme_example(server, key, session, tmp_path) as node,
        ):
            await add(http, session, "one", "two")  # stored: the example's catch-up from 0
            await node.until(lambda: len(node.memories()) == 2, "stored memories")
            await add(http, session, "three")
            await node.until(lambda: len(node.memories()) == 3, "live memory")

            assert await asyncio.to_thread(server.stop) == 0  # SIGTERM while subscribed
            await node.until(lambda: {"closed": 1012} in node.lines, "close 1012")
            await asyncio.to_thread(server.start)  # the same port and database
            await add(http, session, "four", "five")  # maybe before the client is back
            await node.until(lambda: {"connected": True} in node.lines, "reconnect")
            await add(http, session, "six")
            await node.until(lambda: len(node.memories()) >= 6, "memories after the restart")

    assert node.memories() == [
        {"seq": seq, "roleType": "USER", "content": content}
        for seq, content in enumerate(["one", "two", "three", "four", "five", "six"], 1)
    ]
