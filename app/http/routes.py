"""The route table: ``/graphql`` (:class:`GraphQLEndpoint` around :class:`GraphQLApp`, and
:class:`LiveEndpoint` for WebSocket), ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from memvault.db.errors import DatabaseError
from memvault.errors import DATABASE_UNAVAILABLE, Forbidden, ServiceUnavailable, Unauthenticated
from memvault.http import graphiql
from memvault.http.endpoint import GraphQLEndpoint
from memvault.http.live import LiveEndpoint
from memvault.http.view import GraphQLApp, refusal
from memvault.metrics import CONTENT_TYPE
from memvault.runtime import runtime_of
from memvault.schema import build_schema

if TYPE_CHECKING:
    from starlette.requests import Request

    from memvault.config import Settings
    from memvault.db.records import Database
    from memvault.metrics import Metrics
    from memvault.runtime import Runtime

READY_TIMEOUT_S = 1.0


def routes(settings: Settings, metrics: Metrics) -> list[BaseRoute]:
    """The application's routes, with the GraphQL schema built for ``settings``; GraphiQL's
    assets only while it is on. ``metrics`` gets the caches of the view and the endpoint."""
    view = GraphQLApp(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=True,
    )
    endpoint = GraphQLEndpoint(view, max_body_bytes=settings.max_body_bytes)
    if view.schema.documents is not None:  # the fast path's (plain Strawberry keeps none)
        metrics.caches["documents"] = view.schema.documents.cache_counts
    metrics.caches["persisted_queries"] = endpoint.persisted.cache_counts
    table: list[BaseRoute] = [
        Route("/graphql", endpoint),  # any method: the endpoint answers 405 itself
        WebSocketRoute("/graphql", LiveEndpoint(view)),  # subscriptions
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", scrape),
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


async def scrape(request: Request) -> Response:
    """Prometheus text (``app/metrics.py``), for callers :func:`metrics_refusal` lets in."""
    runtime = runtime_of(request)
    refused = await metrics_refusal(request, runtime)
    if refused is not None:
        return refused
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)


async def metrics_refusal(request: Request, runtime: Runtime) -> Response | None:
    """Why ``request`` may not read ``/metrics``, or None: anyone may while the service is open
    (no key exists, ``MEMVAULT_AUTH`` is not ``required``); once it is not, only a client
    address in ``MEMVAULT_METRICS_ALLOW`` or an admin key."""
    client = request.client
    if client is not None and runtime.settings.metrics_allowed(client.host):
        return None
    try:
        principal = await runtime.authenticator.principal(request.headers.get("authorization"))
        principal.require("admin", action="Reading /metrics")  # (the open mode's is admin)
        return None
    except Unauthenticated as exc:
        return refusal(request, 401, exc, {"WWW-Authenticate": "Bearer"})
    except Forbidden as exc:
        return refusal(request, 403, exc)
    except DatabaseError:
        return refusal(request, 503, ServiceUnavailable(DATABASE_UNAVAILABLE))


async def ping(db: Database) -> bool:
    """Whether the database answers within ``READY_TIMEOUT_S``."""
    try:
        await asyncio.wait_for(db.command("ping"), READY_TIMEOUT_S)
        return True
    except (DatabaseError, TimeoutError, OSError):
        return False
