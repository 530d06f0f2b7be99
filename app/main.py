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
from memvault.runtime import start_runtime, stop_runtime, tune_garbage_collector

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from memvault.config import Settings
    from memvault.db.records import Client
    from memvault.runtime import Runtime, State


def create_app(
    settings: Settings, *, client: Client | None = None, runtime: Runtime | None = None
) -> Starlette:
    """The application. With ``client`` (tests), it uses that client and does not close it.
    With ``runtime`` (``memvault serve``, which starts it before it listens, so that it reports
    a failure to start itself), it uses that runtime and leaves stopping it to the caller.

    Its metrics (``/metrics``) are its own: a registry per app (the runtime's, when given).
    """
    metrics = runtime.metrics if runtime is not None else Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        if runtime is not None:
            yield {"runtime": runtime}
            return
        started = await start_runtime(settings, client, metrics=metrics)
        try:
            yield {"runtime": started}
        finally:
            await stop_runtime(started)

    origins = settings.cors_origin_list
    middleware = [Middleware(Observe, metrics=metrics)]
    if origins:
        middleware.append(Middleware(Cors, origins=origins))
    return Starlette(routes=routes(settings, metrics), lifespan=lifespan, middleware=middleware)


@contextlib.asynccontextmanager
async def started_app(settings: Settings) -> AsyncIterator[Starlette]:
    """For ``memvault serve``: the runtime started first (a failure to start is raised here,
    before anything listens), then the app on it, with the garbage collector tuned once both
    are built; the runtime is stopped when the block ends."""
    runtime = await start_runtime(settings, metrics=Metrics())
    try:
        app = create_app(settings, runtime=runtime)
        tune_garbage_collector(settings)
        yield app
    finally:
        await stop_runtime(runtime)
