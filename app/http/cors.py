"""CORS for browser frontends (``MEMVAULT_CORS_ORIGINS``): Starlette's ``CORSMiddleware`` for
requests from an allowed origin; every other request passes by it and gets no CORS header."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from memvault.db.errors import DatabaseError
from memvault.errors import BadRequest
from memvault.runtime import runtime_of

if TYPE_CHECKING:
    from collections.abc import Collection

    from starlette.types import ASGIApp, Receive, Scope, Send

METHODS = ("GET", "POST")
# What fetch-based clients send: ours, GraphiQL's, Apollo Client's and urql's (request headers a
# browser sets itself, such as Accept-Language, need no permission)
HEADERS = (
    "accept",
    "authorization",
    "api-key",
    "content-type",
    "apollo-require-preflight",
    "apollographql-client-name",
    "apollographql-client-version",
    "x-apollo-operation-name",
    "x-request-id",  # a frontend's own request id (README "Observability")
)
# What a frontend's script may read of a response besides the basic headers
EXPOSED = ("x-request-id",)
# How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours)
MAX_AGE_S = 600


class Cors:
    """Answers preflights and marks responses for allowed origins, without credentials (API
    keys travel in ``Authorization``, never in cookies).

    ``*`` (any origin) holds only while no API key exists: once one does, no origin is allowed,
    since a key typed into any web page could then be used from every other one.
    """

    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...]) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.cors = _CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=METHODS,
            allow_headers=HEADERS,
            allow_credentials=False,
            expose_headers=EXPOSED,
            max_age=MAX_AGE_S,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = Headers(scope=scope).get("origin")
            if origin is not None and await self.allowed(origin, scope):
                await self.cors(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def allowed(self, origin: str, scope: Scope) -> bool:
        return await origin_allowed(origin, self.origins, scope)


async def origin_allowed(origin: str, origins: Collection[str], scope: Scope) -> bool:
    """Whether pages of ``origin`` may call the API, given the allowed ``origins``
    (``MEMVAULT_CORS_ORIGINS``; ``*`` only while no API key exists): for CORS, and for WebSocket
    upgrades, which browsers let any page make."""
    if "*" not in origins:
        return origin in origins
    runtime = runtime_of(HTTPConnection(scope))
    try:
        return not await runtime.authenticator.keys_exist()
    except DatabaseError:  # unknown: allow nothing
        return False


class _CORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        """Starlette's, with a refusal (a method or header not allowed) as a GraphQL error,
        like every other refusal of ``/graphql``; its CORS headers stay, so that the browser
        reports why."""
        response = super().preflight_response(request_headers)
        if response.status_code < 300:
            return response
        body = BadRequest(bytes(response.body).decode()).as_response()
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.startswith("access-control-") or k == "vary"
        }
        return JSONResponse(body, status_code=response.status_code, headers=headers)
