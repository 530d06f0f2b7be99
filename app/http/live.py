"""``/graphql`` over WebSocket: subscriptions with the ``graphql-transport-ws`` protocol.

Before the upgrade, the page's origin (browsers send ``Origin``) must be allowed as for HTTP
(``MEMVAULT_CORS_ORIGINS``); then Strawberry's protocol handler runs, with three changes:

- ``connection_init`` carries the API key where keys exist (``{"authorization": "Bearer <key>"}``,
  or the upgrade request's ``Authorization`` header): none closes the connection with 4401, an
  unknown or revoked one with 4403; the key's project is the connection's;
- at most ``MEMVAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION`` operations run at once on a connection (one
  more is refused with ``TOO_MANY_SUBSCRIPTIONS``);
- errors carry ``extensions.code`` as over HTTP.

A subscriber that falls ``MEMVAULT_SUBSCRIPTION_QUEUE_LIMIT`` changes behind is closed with 1013
(try again later; the reason says it was too slow); at shutdown every connection is closed with
1012 (service restart). Clients such as ``graphql-ws`` reconnect on both.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from graphql import GraphQLError
from starlette.websockets import WebSocket

from memvault.db.errors import DatabaseError
from memvault.errors import SubscriberTooSlow, TooManySubscriptions, Unauthenticated, timed_out
from memvault.http.cors import origin_allowed
from memvault.runtime import runtime_of
from memvault.schema._upstream import (
    BaseGraphQLTransportWSHandler,
    OperationType,
    TransportWSOperation,
)
from memvault.schema.errors import OperationNameRequired, format_error
from memvault.schema.loaders import DataLoaders

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send
    from strawberry.types import ExecutionResult

    from memvault.http.view import GraphQLApp
    from memvault.schema import MemvaultSchema
    from memvault.schema.context import Context

log = logging.getLogger("memvault.live")

NO_KEY = 4401  # connection_init without a key where keys exist
BAD_KEY = 4403  # an unknown or revoked key
TRY_AGAIN_LATER = 1013  # too slow a subscriber, or a database that could not check the key


class LiveEndpoint:
    """The WebSocket route of ``/graphql``: the origin check, then Strawberry's view."""

    def __init__(self, view: GraphQLApp) -> None:
        self.view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        origin = websocket.headers.get("origin")
        if origin is not None and not _same_origin(origin, websocket.headers.get("host")):
            origins = runtime_of(websocket).settings.cors_origin_list
            allowed = await origin_allowed(origin, origins, scope)
            if not allowed:
                log.warning("WebSocket from origin %r refused (MEMVAULT_CORS_ORIGINS)", origin)
                await websocket.close(code=1008)  # before the upgrade: HTTP 403
                return
        await self.view(scope, receive, send)


def _same_origin(origin: str, host: str | None) -> bool:
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


class LiveHandler(BaseGraphQLTransportWSHandler[Any, None]):
    """Strawberry's ``graphql-transport-ws`` handler, with keys, limits and our errors."""

    context: Context

    async def handle_message(self, message: Any) -> None:
        """Strawberry's, for JSON objects only (it fails on any other JSON value)."""
        if not isinstance(message, dict):
            await self.handle_invalid_message("WebSocket message must be a JSON object")
            return
        await super().handle_message(cast("Any", message))  # (a TypedDict union there)

    async def handle_connection_init(self, message: Any) -> None:
        payload = message.get("payload")
        if payload is None:  # optional in the protocol; the key may be in the upgrade's header
            message = {**message, "payload": {}}
            payload = message["payload"]
        if isinstance(payload, dict) and not self.connection_init_received:
            refusal = await self._authenticate(payload)
            if refusal is not None:
                if self.connection_init_timeout_task is not None:
                    self.connection_init_timeout_task.cancel()
                self.connection_init_received = True
                await self.websocket.close(*refusal)
                return
            self.context.too_slow = self._too_slow
        await super().handle_connection_init(message)

    async def _authenticate(self, payload: dict[str, Any]) -> tuple[int, str] | None:
        """The connection's principal from its key; the close code and reason when refused."""
        context = self.context
        request = context.request
        runtime = runtime_of(request)
        key = payload.get("authorization", payload.get("Authorization"))
        if not isinstance(key, str):
            key = request.headers.get("authorization")
        try:
            principal = await runtime.authenticator.principal(key)
        except Unauthenticated as exc:
            return (NO_KEY if not key else BAD_KEY), exc.message[:120]
        except DatabaseError:
            return TRY_AGAIN_LATER, "the database is unavailable; try again shortly"
        context.principal = principal
        context.loaders = DataLoaders(db=context.db, project_id=principal.project_id)
        return None

    def _too_slow(self, error: SubscriberTooSlow) -> None:
        log.warning("request %s: %s", self.context.request_id, error.message)
        task = asyncio.create_task(
            self._close(TRY_AGAIN_LATER, "subscriber too slow: resubscribe with afterSeq")
        )
        self._closing = task  # (a reference, so the task is not collected)

    async def _close(self, code: int, reason: str) -> None:
        # The close frame waits behind what the client has not read yet; a client that reads
        # nothing at all also answers no ping, and the server drops it after
        # MEMVAULT_WS_PING_INTERVAL twice.
        try:
            await self.websocket.close(code, reason)
        except Exception:
            log.debug("close of a slow subscriber failed", exc_info=True)

    async def handle_subscribe(self, message: Any) -> None:
        """Strawberry's, with our per-connection limit and :class:`LiveOperation`."""
        if not self.connection_acknowledged:
            await self.websocket.close(code=4401, reason="Unauthorized")
            return
        if message["id"] in self.operations:
            await self.websocket.close(
                code=4409, reason=f"Subscriber for {message['id']} already exists"
            )
            return
        malformed = _malformed_subscribe(message)
        if malformed is not None:
            await self.handle_invalid_message(f"Invalid subscribe message: {malformed}")
            return
        request = message["payload"]
        query, operation_name = request["query"], request.get("operationName")
        settings = self.context.settings
        if len(self.operations) >= settings.max_subscriptions_per_connection:
            limit = settings.max_subscriptions_per_connection
            refusal = TooManySubscriptions(
                f"at most {limit} subscriptions per connection"
                " (MEMVAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION)"
            )
            await self.send_errors(message["id"], refusal.as_response()["errors"])
            return
        try:  # Strawberry's stream raises these instead of reporting them
            kind = cast("MemvaultSchema", self.schema).check_document(query, operation_name)
        except (GraphQLError, OperationNameRequired) as exc:
            error = exc.as_graphql_error() if isinstance(exc, OperationNameRequired) else exc
            await self.send_errors(message["id"], [self.formatted(error)])
            return
        operation = LiveOperation(
            self, message["id"], query, request.get("variables"), operation_name
        )
        if kind is not OperationType.SUBSCRIPTION:  # bounded as over HTTP
            operation.timeout = settings.request_timeout
        operation.task = asyncio.create_task(self.run_operation(operation))
        operation.task.add_done_callback(self._task_done)
        self.operations[message["id"]] = operation

    async def run_operation(self, operation: Any) -> None:
        """Strawberry's, counted in ``memvault_subscriptions_open`` while it runs; a query or a
        mutation stopped at ``MEMVAULT_REQUEST_TIMEOUT`` as over HTTP."""
        with runtime_of(self.context.request).metrics.subscription():
            if operation.timeout is None:
                await super().run_operation(operation)
                return
            try:
                async with asyncio.timeout(operation.timeout) as deadline:
                    await super().run_operation(operation)
            except TimeoutError:
                if not deadline.expired():
                    raise
                log.warning(
                    "request %s: operation %r stopped after %s s (MEMVAULT_REQUEST_TIMEOUT)",
                    self.context.request_id,
                    operation.id,
                    operation.timeout,
                )
                await operation.send_errors(timed_out(operation.timeout).as_response()["errors"])

    def formatted(self, error: GraphQLError) -> Any:
        return format_error(error, request_id=self.context.request_id)

    async def send_errors(self, operation_id: str, errors: list[Any]) -> None:
        """An ``error`` message for an operation that never started (refused)."""
        message: Any = {"id": operation_id, "type": "error", "payload": errors}
        await self.send_message(message)


def _malformed_subscribe(message: dict[str, Any]) -> str | None:
    """What is wrong with a ``subscribe`` message's shape (as the protocol defines it), or None."""
    payload = message.get("payload")
    if not isinstance(message.get("id"), str):
        return "id must be a string"
    if not isinstance(payload, dict):
        return "payload must be an object"
    if not isinstance(payload.get("query"), str):
        return "query must be a string"
    if not isinstance(payload.get("operationName"), str | None):
        return "operationName must be a string or null"
    for name in ("variables", "extensions"):
        if not isinstance(payload.get(name), dict | None):
            return f"{name} must be an object or null"
    return None


class LiveOperation(TransportWSOperation[Any, None]):
    """One operation of a connection, sending errors as over HTTP."""

    handler: LiveHandler
    timeout: float | None = None  # seconds it may run (queries and mutations)

    async def send_initial_errors(self, errors: list[GraphQLError]) -> None:
        await self.send_errors([self.handler.formatted(error) for error in errors])

    async def send_errors(self, errors: list[Any]) -> None:
        """This operation's ``error`` message (its last: it is forgotten first)."""
        message: Any = {"id": self.id, "type": "error", "payload": errors}
        await self.send_operation_message(message)

    async def send_next(self, execution_result: ExecutionResult) -> None:
        payload: dict[str, Any] = {"data": execution_result.data}
        if execution_result.errors:
            payload["errors"] = [self.handler.formatted(e) for e in execution_result.errors]
        if execution_result.extensions:
            payload["extensions"] = execution_result.extensions
        message: Any = {"id": self.id, "type": "next", "payload": payload}
        await self.send_operation_message(message)
