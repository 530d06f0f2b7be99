"""The route table: ``/graphql`` (:class:`GraphQLEndpoint` around :class:`GraphQLApp`, and
:class:`LiveEndpoint` for WebSocket), ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from memvault.db.errors import DatabaseError
from memvault.http import graphiql
from memvault.http.endpoint import GraphQLEndpoint
from memvault.http.live import LiveEndpoint
from memvault.http.view import GraphQLApp
from memvault.runtime import runtime_of
from memvault.schema import build_schema

if TYPE_CHECKING:
    from starlette.requests import Request

    from memvault.config import Settings
    from memvault.db.records import Database

READY_TIMEOUT_S = 1.0


def routes(settings: Settings) -> list[BaseRoute]:
    """The application's routes, with the GraphQL schema built for ``settings``; GraphiQL's
    assets only while it is on."""
    view = GraphQLApp(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=True,
    )
    endpoint = GraphQLEndpoint(view, max_body_bytes=settings.max_body_bytes)
    table: list[BaseRoute] = [
        Route("/graphql", endpoint),  # any method: the endpoint answers 405 itself
        WebSocketRoute("/graphql", LiveEndpoint(view)),  # subscriptions
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    if settings.graphiql:
        table.append(Mount(graphiql.STATIC_PATH, app=graphiql.static_files()))
    return table


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    # A dead embedded engine is not ready even while a restarted one would answer the ping
    # in time: the driver retries the ping within its operation timeout.
    engine_down = runtime.engine is not None and not runtime.engine.alive()
    if not engine_down and await ping(runtime.db):
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "database unavailable"}, status_code=503)


async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text: database commands sent by this process (when it owns its client)."""
    runtime = runtime_of(request)
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


async def ping(db: Database) -> bool:
    """Whether the database answers within ``READY_TIMEOUT_S``."""
    try:
        await asyncio.wait_for(db.command("ping"), READY_TIMEOUT_S)
        return True
    except (DatabaseError, TimeoutError, OSError):
        return False
