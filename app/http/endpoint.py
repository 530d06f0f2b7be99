"""``/graphql``: the body limit and API key checks, then GraphQL (see ``app/http/view.py``)
within the request deadline (``MEMVAULT_REQUEST_TIMEOUT``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request

from memvault.db.errors import DatabaseError
from memvault.errors import (
    DATABASE_UNAVAILABLE,
    MethodNotAllowed,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
    timed_out,
)
from memvault.http.persisted import PersistedQueries
from memvault.http.view import GraphQLApp, plain_operation, refusal, request_id_of
from memvault.runtime import runtime_of

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send


log = logging.getLogger("memvault")
METHODS = ("GET", "POST")


class GraphQLEndpoint:
    """Before GraphQL sees a request: resolve the caller's API key from the headers (401 when
    missing or wrong, where one is needed) before reading the body, and refuse bodies over the
    limit (413) without parsing them. Then a plain JSON operation goes to the view's direct
    path, anything else to the view itself, within the request deadline: past it the request's
    work is cancelled (its DataLoader reads with it) and it answers SERVICE_UNAVAILABLE.

    A class, not a function: Starlette routes call plain functions with a request, and ASGI
    callables with (scope, receive, send).
    """

    def __init__(self, view: GraphQLApp, *, max_body_bytes: int, lean: bool = True) -> None:
        self.view = view
        self.max_body_bytes = max_body_bytes
        self.lean = lean
        self.persisted = PersistedQueries(view.schema, view.decode_json)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        asgi = (scope, receive, send)
        request_id = request_id_of(request)
        if request.method not in METHODS:
            allowed = MethodNotAllowed(f"{request.method} is not allowed: use GET or POST")
            await refusal(request, 405, allowed, {"Allow": ", ".join(METHODS)})(*asgi)
            return
        if _wants_graphiql(request):
            await self.view(scope, receive, send)
            return
        limit = self.max_body_bytes
        headers = request.headers
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await refusal(request, 413, _too_large(limit))(*asgi)
            return
        runtime = runtime_of(request)
        try:  # before the body: a caller without a valid key costs no body's worth of memory
            request.state.principal = await runtime.authenticator.principal(
                headers.get("authorization")
            )
        except Unauthenticated as exc:
            await refusal(request, 401, exc, {"WWW-Authenticate": "Bearer"})(*asgi)
            return
        except DatabaseError:
            unavailable = ServiceUnavailable(DATABASE_UNAVAILABLE)
            await refusal(request, 503, unavailable)(*asgi)
            return
        if request.method == "POST" and not _is_json(headers.get("content-type", "")):
            unsupported = UnsupportedMediaType(
                "the body must be JSON: Content-Type: application/json"
            )
            await refusal(request, 415, unsupported)(*asgi)
            return
        body = bytearray()
        more = request.method == "POST"
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":  # gone, or cut off for sending too slowly
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await refusal(request, 413, _too_large(limit))(*asgi)
                return
        payload = bytes(body)
        timeout = runtime.settings.request_timeout
        answering = False

        async def answer(message: Message) -> None:
            nonlocal answering
            if message["type"] == "http.response.start":  # sending is bounded by the server
                answering = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(timeout) as deadline:
                await self.graphql(request, payload, answer)
        except TimeoutError:
            if not deadline.expired() or answering:
                raise
            log.warning(
                "request %s stopped after %s s (MEMVAULT_REQUEST_TIMEOUT)", request_id, timeout
            )
            # HTTP 200, as any error met while executing: it may have written (clients read an
            # error status as "not run")
            await refusal(request, 200, timed_out(timeout))(*asgi)

    async def graphql(self, request: Request, payload: bytes, send: Send) -> None:
        """Answer the request (whose body is ``payload``): the direct path (only with the fast
        path: it runs ``execute_lean``), or the view. A persisted query is resolved first, so
        both answer it alike."""
        runtime = runtime_of(request)
        try:
            resolved = await self.persisted.resolve(request, payload, runtime.db, runtime.settings)
        except DatabaseError:
            unavailable = ServiceUnavailable(DATABASE_UNAVAILABLE)
            await refusal(request, 503, unavailable)(request.scope, request.receive, send)
            return
        if isinstance(resolved, tuple):
            status, error = resolved
            await refusal(request, status, error)(request.scope, request.receive, send)
            return
        payload = resolved
        if self.lean and self.view.schema.fast_path and request.method == "POST":
            operation = plain_operation(request.headers, payload, self.view.decode_json)
            if operation is not None:
                await self.view.answer(request, operation, send)
                return
        replayed = False
        receive = request.receive

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": payload, "more_body": False}

        await self.view(request.scope, replay, send)


def _is_json(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "application/json"


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes")


def _wants_graphiql(request: Request) -> bool:
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and "query" not in request.query_params
        and "extensions" not in request.query_params
    )
