"""The ASGI application: the routes (``app/http``) and a lifespan that starts the process's
runtime (``app/runtime.py``), hands it to every request and stops it at shutdown.

Only the CLI (``memvault serve``) and tests import this module."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware

from memvault.http.cors import Cors
from memvault.http.observe import Observe
from memvault.http.routes import routes
from memvault.metrics import Metrics
from memvault.runtime import start_runtime, stop_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from memvault.config import Settings
    from memvault.db.records import Client
    from memvault.runtime import State


def create_app(
    settings: Settings, *, client: Client | None = None, tune_gc: bool = False
) -> Starlette:
    """The application. With ``client`` (tests), it uses that client and does not close it.

    ``tune_gc`` (``memvault serve``) tunes the process's garbage collector once started.
    Its metrics (``/metrics``) are its own: a registry per app.
    """
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        runtime = await start_runtime(settings, client, tune_gc=tune_gc, metrics=metrics)
        try:
            yield {"runtime": runtime}
        finally:
            await stop_runtime(runtime)

    origins = settings.cors_origin_list
    middleware = [Middleware(Observe, metrics=metrics)]
    if origins:
        middleware.append(Middleware(Cors, origins=origins))
    return Starlette(routes=routes(settings, metrics), lifespan=lifespan, middleware=middleware)
