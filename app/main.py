"""The ASGI application: routes, and a lifespan owning the engine, the client and the purge task."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pymongo
from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from memvault.db.documents import UNION_SIZES
from memvault.db.engine import CommandCounter, EmbeddedEngine, EngineError, connect
from memvault.db.indexes import ensure_indexes
from memvault.db.purge import purge
from memvault.db.shapes import warm_up
from memvault.endpoint import GraphQLEndpoint
from memvault.schema import build_schema
from memvault.schema.view import GraphQLApp
from memvault.security import Authenticator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase
    from starlette.requests import Request

    from memvault.config import Settings
    from memvault.db.documents import Doc

log = logging.getLogger("memvault")

READY_TIMEOUT_S = 1.0
# Bound of start-up's and the purge's database work (index builds, the warm-up, deleting a
# backlog): no request waits for it, and on a big database it may rightly take minutes, far
# past MEMVAULT_DB_TIMEOUT_MS, which bounds every other operation.
BACKGROUND_TIMEOUT_S = 600.0
# A nested read allocates tens of thousands of objects that live until its response is written.
# At CPython's default young threshold (700) that is dozens of collections per request, which
# promote the live request objects until full collections walk the whole heap (schema, driver).
GC_YOUNG_THRESHOLD = 50_000


@dataclass
class Runtime:
    """What the lifespan builds and the handlers use."""

    settings: Settings
    client: AsyncMongoClient[Doc]
    db: AsyncDatabase[Doc]
    authenticator: Authenticator
    engine: EmbeddedEngine | None = None
    commands: CommandCounter | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


async def ping(db: AsyncDatabase[Doc]) -> bool:
    """Whether the database answers within ``READY_TIMEOUT_S``."""
    try:
        await asyncio.wait_for(db.command("ping"), READY_TIMEOUT_S)
        return True
    except (PyMongoError, TimeoutError, OSError):
        return False


async def is_embedded_engine(client: AsyncMongoClient[Doc]) -> bool:
    info = await client.admin.command("buildInfo")
    return bool(info.get("process") == "nx_27017")


async def purge_forever(runtime: Runtime) -> None:
    settings = runtime.settings
    while True:
        await asyncio.sleep(settings.purge_interval)
        try:
            with pymongo.timeout(BACKGROUND_TIMEOUT_S):
                counts = await purge(runtime.db, older_than_ms=settings.purge_after * 1000)
            log.info("purge: removed %s", counts)
        except PyMongoError as exc:
            log.warning("purge failed, will try again: %s", exc)


async def warm(db: AsyncDatabase[Doc], sizes: Sequence[int]) -> None:
    """Run the engine's batched read shapes of these union sizes once (``db/shapes.py``)."""
    started = time.monotonic()
    with pymongo.timeout(BACKGROUND_TIMEOUT_S):
        sent = await warm_up(db, sizes=sizes)
    elapsed = time.monotonic() - started
    log.info("warmed %d read shapes (unions up to %d) in %.1fs", sent, max(sizes), elapsed)


def tune_garbage_collector() -> None:
    """For a long-running server: leave what start-up built out of collections (``gc.freeze``)
    and collect young objects every ``GC_YOUNG_THRESHOLD`` allocations."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def create_app(
    settings: Settings, *, client: AsyncMongoClient[Doc] | None = None, tune_gc: bool = False
) -> Starlette:
    """The application. With ``client`` (tests), it uses that client and does not close it.

    ``tune_gc`` (``memvault serve``) tunes the process's garbage collector once started.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine: EmbeddedEngine | None = None
        commands = CommandCounter()
        own_client = client is None
        if client is not None:
            mongo = client
        else:
            uri = settings.mongodb_uri
            if uri is None:
                engine = EmbeddedEngine(
                    settings.data_dir, start_timeout=settings.engine_start_timeout
                )
                log.info("starting embedded engine (nx-27017) with data in %s", engine.data_dir)
                try:
                    uri = await asyncio.to_thread(engine.start)
                except EngineError as exc:
                    log.error("cannot start the embedded engine: %s", exc)
                    raise
                log.info("embedded engine answers on %s", uri)
            else:
                log.info("using MongoDB at %s", _redact(uri))
            mongo = connect(
                uri,
                timeout_ms=settings.db_timeout_ms,
                operation_timeout_ms=settings.db_timeout_ms,
                event_listeners=[commands],
            )
        database = mongo[settings.database]
        runtime = Runtime(
            settings=settings,
            client=mongo,
            db=database,
            authenticator=Authenticator(
                database,
                required=settings.auth == "required",
                cache_seconds=settings.auth_cache_seconds,
            ),
            engine=engine,
            commands=commands,
        )
        try:
            await runtime.db.command("ping")
            log.info("database %r answers ping", settings.database)
            embedded = await is_embedded_engine(mongo)
            with pymongo.timeout(BACKGROUND_TIMEOUT_S):
                declared = await ensure_indexes(runtime.db, embedded=embedded)
            log.info("ensured %d indexes (%s set)", declared, "embedded" if embedded else "MongoDB")
            if embedded and own_client:  # (tests sharing one client skip it)
                # The largest unions (~0.5 s of engine CPU each to compile) are left to their first
                # use: warming them here delayed every start by seconds, and warming them behind a
                # serving server stalled the engine under the first requests' load.
                await warm(runtime.db, UNION_SIZES[:-1])
            if engine is not None:
                runtime.tasks.append(
                    asyncio.create_task(engine.supervise(), name="engine-supervisor")
                )
            if settings.purge_interval > 0:
                runtime.tasks.append(asyncio.create_task(purge_forever(runtime), name="purge"))
                log.info(
                    "purge task: every %ds, items deleted over %ds ago",
                    settings.purge_interval,
                    settings.purge_after,
                )
            app.state.runtime = runtime
            await _announce_auth(runtime)
            if tune_gc:
                tune_garbage_collector()
            log.info("memvault is ready: open http://%s:%d/graphql", settings.host, settings.port)
            yield
        finally:
            for task in runtime.tasks:
                task.cancel()
            for task in runtime.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if own_client:
                await mongo.close()
            if engine is not None:
                engine.stop()
                log.info("embedded engine stopped")

    graphql_app = GraphQLApp(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=True,
    )
    endpoint = GraphQLEndpoint(graphql_app, max_body_bytes=settings.max_body_bytes)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        # A dead embedded engine is not ready even while a restarted one would answer the ping
        # in time: the driver retries the ping within its operation timeout.
        engine_down = runtime.engine is not None and not runtime.engine.alive()
        if not engine_down and await ping(runtime.db):
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "database unavailable"}, status_code=503)

    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus text: database commands sent by this process (when it owns its client)."""
        runtime: Runtime = request.app.state.runtime
        lines = []
        if runtime.commands is not None:
            lines += [
                "# TYPE memvault_db_commands_total counter",
                f"memvault_db_commands_total {runtime.commands.started_total}",
                "# TYPE memvault_db_command_failures_total counter",
                f"memvault_db_command_failures_total {runtime.commands.failed_total}",
            ]
        restarts = runtime.engine.restarts if runtime.engine else 0
        lines += [
            "# TYPE memvault_engine_restarts_total counter",
            f"memvault_engine_restarts_total {restarts}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n")

    routes = [
        Route("/graphql", endpoint, methods=["GET", "POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _announce_auth(runtime: Runtime) -> None:
    if runtime.settings.auth == "required":
        log.info("auth: required; every request needs an API key")
    elif await runtime.authenticator.keys_exist():
        log.info("auth: API keys exist, so every request needs one")
    else:
        log.warning(
            "auth: OPEN. No API key exists and MEMVAULT_AUTH is not 'required': anyone who can "
            "reach this port reads and writes the 'default' project. "
            "Create a key with `memvault keys create` or set MEMVAULT_AUTH=required."
        )


def _redact(uri: str) -> str:
    """The URI without its password."""
    scheme, sep, rest = uri.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return uri
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
