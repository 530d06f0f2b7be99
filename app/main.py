"""The ASGI application: routes, and a lifespan owning the engine, the client and the purge task."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL

from app.db.engine import CommandCounter, EmbeddedEngine, EngineError, connect
from app.db.indexes import ensure_indexes
from app.db.purge import purge
from app.errors import MemvaultError, PayloadTooLarge, ServiceUnavailable, Unauthenticated
from app.schema import build_schema
from app.schema.context import Context
from app.schema.errors import format_error
from app.schema.loaders import DataLoaders
from app.security import Authenticator, Principal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
    from starlette.websockets import WebSocket
    from strawberry.http import GraphQLHTTPResponse
    from strawberry.types import ExecutionResult

    from app.config import Settings
    from app.db.documents import Doc

log = logging.getLogger("memvault")

READY_TIMEOUT_S = 1.0
# A nested read allocates tens of thousands of objects that live until its response is written.
# At CPython's default young threshold (700) that is dozens of collections per request, which
# promote the live request objects until full collections walk the whole heap (schema, driver).
GC_YOUNG_THRESHOLD = 50_000
NO_PROJECT = Principal(project_id="", scope="read")


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


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context and error contract."""

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> Context:
        runtime: Runtime = request.app.state.runtime
        # Set by GraphQLGuard before this view runs; only the GraphiQL page (which runs no
        # operation) passes the guard without one, and gets a principal of no project.
        principal = getattr(request.state, "principal", None) or NO_PROJECT
        return Context(
            request=request,
            response=response if not hasattr(response, "receive") else None,  # type: ignore[arg-type,unused-ignore]
            db=runtime.db,
            settings=runtime.settings,
            principal=principal,
            request_id=request_id_of(request),
            loaders=DataLoaders(db=runtime.db, project_id=principal.project_id),
        )

    def encode_json(self, data: object) -> str | bytes:
        """orjson: ~1 ms less per nested response (140 KB) than the standard library."""
        try:
            return orjson.dumps(data)
        except TypeError:  # what orjson refuses (e.g. integers past 64 bits), json still writes
            return json.dumps(data, separators=(",", ":"))

    def decode_json(self, data: str | bytes) -> object:
        """JSON bodies; one nested too deeply or not UTF-8 is a 400 like any malformed body.

        The standard library, not orjson: orjson reads an integer past 64 bits as a float, so
        metadata would silently change instead of being refused as out of range.
        """
        try:
            return json.loads(data)
        except (RecursionError, UnicodeDecodeError):
            raise json.JSONDecodeError("nested too deeply or not UTF-8", "", 0) from None

    async def process_result(
        self, request: Request | WebSocket, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            request_id = request_id_of(request)
            data["errors"] = [format_error(error, request_id=request_id) for error in result.errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data


def request_id_of(request: Request | WebSocket) -> str:
    """This request's id (made on first use): shown to clients with masked errors, and logged."""
    request_id: str | None = getattr(request.state, "request_id", None)
    if request_id is None:
        request_id = request.state.request_id = os.urandom(8).hex()
    return request_id


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
            counts = await purge(runtime.db, older_than_ms=settings.purge_after * 1000)
            log.info("purge: removed %s", counts)
        except PyMongoError as exc:
            log.warning("purge failed, will try again: %s", exc)


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
            mongo = connect(uri, timeout_ms=settings.db_timeout_ms, event_listeners=[commands])
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
            declared = await ensure_indexes(runtime.db, embedded=embedded)
            log.info("ensured %d indexes (%s set)", declared, "embedded" if embedded else "MongoDB")
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
    guarded = GraphQLGuard(graphql_app, max_body_bytes=settings.max_body_bytes)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        if await ping(runtime.db):
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
        Route("/graphql", guarded, methods=["GET", "POST"]),
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


def _error_response(error: MemvaultError, status: int, request_id: str) -> JSONResponse:
    extensions: dict[str, Any] = {"code": error.code}
    if status >= 500:
        extensions["requestId"] = request_id
    return JSONResponse(
        {"data": None, "errors": [{"message": error.message, "extensions": extensions}]},
        status_code=status,
    )


class GraphQLGuard:
    """Before GraphQL sees a request: refuse bodies over the limit (413) without parsing them,
    and resolve the caller's API key (401 when missing or wrong, where one is needed).

    A class, not a function: Starlette routes call plain functions with a request, and ASGI
    callables with (scope, receive, send).
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = StarletteRequest(scope, receive)
        request_id = request_id_of(request)
        if _wants_graphiql(request):
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _error_response(_too_large(limit), 413, request_id)(scope, receive, send)
            return
        body = bytearray()
        more = request.method == "POST"
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _error_response(_too_large(limit), 413, request_id)(scope, receive, send)
                return
        runtime: Runtime = request.app.state.runtime
        try:
            request.state.principal = await runtime.authenticator.principal(
                request.headers.get("authorization")
            )
        except Unauthenticated as exc:
            await _error_response(exc, 401, request_id)(scope, receive, send)
            return
        except PyMongoError:
            unavailable = ServiceUnavailable("The database is unavailable; try again shortly")
            await _error_response(unavailable, 503, request_id)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes")


def _wants_graphiql(request: StarletteRequest) -> bool:
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and "query" not in request.query_params
    )


def _redact(uri: str) -> str:
    """The URI without its password."""
    scheme, sep, rest = uri.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return uri
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
