"""Around every HTTP request: its id (the client's ``X-Request-Id`` when short and safe, else a
fresh one; echoed in the response), its access log line, and for ``/graphql`` its metrics
(``app/metrics.py``).

The operation and outcome code come from what answered it: the executor records the operation
it ran (``app/schema/cost.py``), the view and every refusal the code (``app/http/view.py``), in
the request's state.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING

from memvault.logs import REQUEST_ID
from memvault.metrics import ANONYMOUS, NO_OPERATION, OK

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from memvault.metrics import Metrics

access = logging.getLogger("memvault.access")

GRAPHQL_PATH = "/graphql"
# A client's request id is kept when it is 1-128 of these characters (UUIDs, trace ids,
# base64): nothing that could break a log line or a header.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
NO_RESPONSE = "NO_RESPONSE"  # the client went away before an answer was sent


def request_id_for(given: str | None) -> str:
    """The request id: the client's (``X-Request-Id``) when it matches ``CLIENT_REQUEST_ID``,
    else 16 fresh hex digits."""
    if given is not None and CLIENT_REQUEST_ID.fullmatch(given):
        return given
    return os.urandom(8).hex()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


class Observe:
    """The ASGI middleware that identifies, logs and measures each HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        request_id = state["request_id"] = request_id_for(_header(scope, b"x-request-id"))
        echoed = (b"x-request-id", request_id.encode())
        status = 0
        size = 0

        async def observed(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        graphql = scope["path"] == GRAPHQL_PATH
        metrics = self.metrics
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        if graphql:
            metrics.in_flight.inc()
        failed = True
        try:
            await self.app(scope, receive, observed)
            failed = False
        finally:
            seconds = time.perf_counter() - started
            code = state.get("code") or _code_of(status, failed)
            operation: tuple[str | None, str] | None = state.get("operation")
            name, kind = (NO_OPERATION, NO_OPERATION) if operation is None else operation
            if graphql:
                metrics.in_flight.dec()
                metrics.request(name or ANONYMOUS, kind, code, seconds, size)
            if access.isEnabledFor(logging.INFO):
                _log_access(scope, status, code, operation, seconds, request_id)
            REQUEST_ID.reset(token)


def _code_of(status: int, failed: bool) -> str:
    """The outcome code of a request that set none: OK, or what its status says."""
    if failed:
        return "INTERNAL_SERVER_ERROR"
    if status == 0:
        return NO_RESPONSE
    return OK if status < 400 else f"HTTP_{status}"


def _log_access(
    scope: Scope,
    status: int,
    code: str,
    operation: tuple[str | None, str] | None,
    seconds: float,
    request_id: str,
) -> None:
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "-"
    principal = scope["state"].get("principal")
    project = principal.project_id if principal is not None and principal.project_id else None
    name, kind = operation if operation is not None else (None, None)
    milliseconds = round(seconds * 1000, 2)
    access.info(
        '%s "%s %s HTTP/%s" %d %s op=%s project=%s %.2fms id=%s',
        address,
        scope["method"],
        scope["path"],
        scope.get("http_version", "1.1"),
        status,
        code,
        (name or ANONYMOUS) if operation is not None else "-",
        project or "-",
        milliseconds,
        request_id,
        extra={
            "request_id": request_id,
            "operation": name,
            "operation_type": kind,
            "project": project,
            "duration_ms": milliseconds,
            "code": code,
            "status": status,
            "method": scope["method"],
            "path": scope["path"],
            "client": address,
        },
    )
