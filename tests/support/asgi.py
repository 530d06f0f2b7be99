"""The application in process, run as an ASGI server runs it: the lifespan around the test, and
a copy of the lifespan's state in every request's scope (``request.state.runtime``)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from starlette.applications import Starlette
    from starlette.types import Receive, Scope, Send

    from memvault.runtime import Runtime


class Served:
    """``app`` with its lifespan running: an ASGI app to send requests to (for instance through
    ``httpx.ASGITransport``)."""

    def __init__(self, app: Starlette, state: Mapping[str, Any]) -> None:
        self.app = app
        self.state = state

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.state["runtime"]
        return runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # What uvicorn does: each request gets a shallow copy of the lifespan's state.
        await self.app({**scope, "state": dict(self.state)}, receive, send)


@contextlib.asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[Served]:
    """Run ``app``'s lifespan around the block."""
    async with app.router.lifespan_context(app) as state:
        yield Served(app, state or {})


def post_scope(headers: list[tuple[bytes, bytes]], path: str = "/graphql") -> dict[str, Any]:
    """The ASGI scope of a ``POST`` to ``path`` with these headers, for tests that drive the
    app message by message (a body sent in pieces, a client that goes away)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
