"""Strawberry's ASGI view, with our context and error contract, and its direct path.

A POST whose JSON body holds one well-formed operation (what every client and bot sends, and
the hot path of a chat turn) is answered by :meth:`GraphQLApp.answer`: one request object, no
re-read of the body, no content-type parser, no temporary response. Everything else (GET, the
GraphiQL page, other content types, a body that is not one well-formed operation) goes through
Strawberry's own ``run``, which answers it, errors included. Both execute with the same schema,
context and result formatting (:meth:`GraphQLApp.process_result` also encodes, capped and off the
loop when large: ``app/schema/response.py``); ``tests/api/test_endpoint.py`` compares them request
for request.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from strawberry.asgi import GraphQL
from strawberry.types import ExecutionResult

from memvault.db.errors import DatabaseError
from memvault.errors import (
    BadRequest,
    MemvaultError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from memvault.http import graphiql
from memvault.http.live import LiveHandler
from memvault.http.observe import request_id_for
from memvault.runtime import runtime_of
from memvault.schema._upstream import (
    CannotGetOperationTypeError,
    HTTPException,
    InvalidOperationTypeError,
    OperationType,
)
from memvault.schema.context import Context
from memvault.schema.errors import DocumentInvalid, OperationNameRequired, format_error
from memvault.schema.fastpath.lean import execute_lean
from memvault.schema.loaders import DataLoaders
from memvault.schema.response import EncodedResponse, TooLarge, encode_capped, too_large
from memvault.security import Principal
from memvault.validation import SURROGATE

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from starlette.datastructures import Headers
    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send
    from starlette.websockets import WebSocket
    from strawberry.http import GraphQLHTTPResponse

    from memvault.schema import MemvaultSchema
    from memvault.schema._upstream import AsyncHTTPRequestAdapter, GraphQLRequestData

log = logging.getLogger("memvault.graphql")

NO_PROJECT = Principal(project_id="", scope="read")
POST_OPERATIONS = frozenset(OperationType.from_http("POST"))
JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
GRAPHQL_TRANSPORT_WS = "graphql-transport-ws"  # the only WebSocket subprotocol spoken
CONNECTION_INIT_WAIT = timedelta(seconds=10)  # a WebSocket that sends no connection_init is closed


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context and error contract, and :meth:`answer`; over
    WebSocket, subscriptions with ``graphql-transport-ws`` only (``app/http/live.py``)."""

    schema: MemvaultSchema
    graphql_transport_ws_handler_class = LiveHandler

    def __init__(self, schema: MemvaultSchema, **options: Any) -> None:
        super().__init__(
            schema,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS,),
            connection_init_wait_timeout=CONNECTION_INIT_WAIT,
            max_subscriptions_per_connection=None,  # LiveHandler applies ours, with its code
            **options,
        )

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        return True  # LiveEndpoint checked it before the upgrade (MEMVAULT_CORS_ORIGINS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry's, with its refusals (plain text there) answered as GraphQL errors, and
        its JSON answers in the media type the client accepts (:func:`response_type`)."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.run(request)
        except HTTPException as exc:
            response = refused_by_view(request, exc)
        else:
            if response.media_type == JSON:
                response.status_code = answer_status(request, response.status_code)
                response.headers["content-type"] = response_type(request.headers)
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our own GraphiQL page (:mod:`memvault.http.graphiql`), not Strawberry's CDN one."""
        authenticator = runtime_of(request).authenticator
        try:
            keys_required = authenticator.required or await authenticator.keys_exist()
        except DatabaseError:  # the page still loads; the hint is harmless if no key is needed
            keys_required = True
        return graphiql.page(keys_required=keys_required)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None = None
    ) -> Context:
        runtime = runtime_of(request)
        # Set by GraphQLEndpoint before this view runs; only the GraphiQL page (which runs no
        # operation) passes it without one, and gets a principal of no project.
        principal = getattr(request.state, "principal", None) or NO_PROJECT
        if request.scope["type"] == "websocket":  # its key comes with connection_init
            principal = NO_PROJECT
        return Context(
            request=request,
            db=runtime.db,
            settings=runtime.settings,
            principal=principal,
            request_id=request_id_of(request),
            loaders=DataLoaders(db=runtime.db, project_id=principal.project_id),
            live=runtime.live,
        )

    def encode_json(self, data: object) -> str | bytes:
        """What Strawberry sends: an HTTP answer :meth:`process_result` encoded already, or a
        ``graphql-transport-ws`` message as text (bytes would go as a binary frame, which a
        browser hands to ``graphql-ws`` as a Blob: it closes the connection with 4004)."""
        if isinstance(data, EncodedResponse):
            return data.body
        return self.encode_bytes(data).decode()

    def parse_json(self, data: str | bytes) -> Any:
        """A JSON object (one operation) or array (a batch, which the view refuses); any other
        JSON value is a 400 too (Strawberry's view would fail on it with a 500)."""
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "The request body must be a JSON object")
        name = parsed.get("operationName") if isinstance(parsed, dict) else None
        if isinstance(parsed, dict) and isinstance(name, str) and SURROGATE.search(name):
            # No operation has that name (names are ASCII); the 400 saying so echoes it, and a
            # lone surrogate cannot be encoded (the response would fail with a 500).
            parsed["operationName"] = SURROGATE.sub("\ufffd", name)
        return parsed

    @staticmethod
    def decode_json(data: str | bytes) -> object:
        """JSON bodies; one nested too deeply or not UTF-8 is a 400 like any malformed body.

        The standard library, not orjson: orjson reads an integer past 64 bits as a float, so
        metadata would silently change instead of being refused as out of range.
        """
        try:
            return json.loads(data)
        except (RecursionError, UnicodeDecodeError):
            raise json.JSONDecodeError("nested too deeply or not UTF-8", "", 0) from None

    async def execute_single(  # Strawberry's signature
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, answering :class:`OperationNameRequired` as :meth:`answer` does."""
        try:
            return await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except OperationNameRequired as exc:
            sub_response.status_code = 400
            return ExecutionResult(data=None, errors=[exc.as_graphql_error()])
        except HTTPException as exc:
            cause = exc.__cause__
            if isinstance(cause, CannotGetOperationTypeError):  # an unknown operationName
                sub_response.status_code = 400
                return ExecutionResult(data=None, errors=[unknown_operation(cause)])
            if isinstance(cause, InvalidOperationTypeError):  # a mutation over GET
                raise HTTPException(405, cause.as_http_error_reason(request.method)) from cause
            raise

    async def process_result(
        self, request: Request | WebSocket, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            request_id = request_id_of(request)
            errors = [format_error(error, request_id=request_id) for error in result.errors]
            data["errors"] = list[object](errors)
            request.state.code = errors[0]["extensions"]["code"]  # the outcome (metrics)
            if result.data is None and not any(error.path for error in result.errors):
                # A request error: nothing ran (a field error has a path)
                request.state.request_error = True
                if response_type(request.headers) == GRAPHQL_RESPONSE:
                    del data["data"]  # the spec's sign that nothing ran
        if result.extensions:
            data["extensions"] = result.extensions
        return await self.encoded(request, data)

    async def encoded(
        self, request: Request | WebSocket, data: GraphQLHTTPResponse
    ) -> GraphQLHTTPResponse:
        """``data`` with its body, encoded off the event loop when large; a PAYLOAD_TOO_LARGE
        error in its place when the body would exceed ``MEMVAULT_MAX_RESPONSE_BYTES``."""
        runtime = runtime_of(request)
        cap = runtime.settings.max_response_bytes
        response: dict[str, Any] = dict(data)
        try:
            body = await encode_capped(response, cap=cap, encode=self.encode_bytes)
        except TooLarge:
            log.warning("request %s: response over %d bytes refused", request_id_of(request), cap)
            response = too_large(cap)
            request.state.code = PayloadTooLarge.code
            body = self.encode_bytes(response)
        return cast("GraphQLHTTPResponse", EncodedResponse(response, body))

    def encode_bytes(self, data: object) -> bytes:
        """orjson: ~1 ms less per nested response (140 KB) than the standard library."""
        try:
            return orjson.dumps(data)
        except TypeError:  # what orjson refuses (e.g. integers past 64 bits), json still writes
            return json.dumps(data, separators=(",", ":")).encode()

    async def answer(self, request: Request, operation: Operation, send: Send) -> None:
        """Execute one plain operation and send its JSON result, as :meth:`run` would."""
        status = 200
        try:
            result = await execute_lean(
                self.schema,
                operation.query,
                variable_values=operation.variables,
                context_value=await self.get_context(request),
                operation_name=operation.operation_name,
                allowed_operation_types=POST_OPERATIONS,
                operation_extensions=operation.extensions,
            )
        except CannotGetOperationTypeError as exc:
            status, result = 400, ExecutionResult(data=None, errors=[unknown_operation(exc)])
        except OperationNameRequired as exc:
            status, result = 400, ExecutionResult(data=None, errors=[exc.as_graphql_error()])
        encoded = self.encode_json(await self.process_result(request, result))
        body = encoded.encode() if isinstance(encoded, str) else encoded
        media = response_type(request.headers)
        await send(
            {
                "type": "http.response.start",
                "status": answer_status(request, status),
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", media.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def response_type(headers: Headers) -> str:
    """``application/graphql-response+json`` when the client accepts it (GraphQL over HTTP),
    else ``application/json`` (also when it accepts neither: the spec allows it)."""
    for item in headers.get("accept", "").split(","):
        media, _, parameters = item.partition(";")
        if media.strip().lower() == GRAPHQL_RESPONSE and not _refused(parameters):
            return GRAPHQL_RESPONSE
    return JSON


def _refused(parameters: str) -> bool:
    """Whether an Accept item's parameters give it weight 0 (``q=0``: not acceptable)."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value) <= 0
            except ValueError:
                return False
    return False


def answer_status(request: Request, status: int) -> int:
    """An answer's HTTP status: 400 for a request error (nothing ran) when the client accepts
    ``application/graphql-response+json``; as executed otherwise (200 for ``application/json``,
    which older clients read as "not GraphQL" when it is not 200)."""
    if (
        status == 200
        and getattr(request.state, "request_error", False)
        and response_type(request.headers) == GRAPHQL_RESPONSE
    ):
        return 400
    return status


def unknown_operation(exc: CannotGetOperationTypeError) -> DocumentInvalid:
    return DocumentInvalid(exc.as_http_error_reason())


def refusal(
    request: Request,
    status: int,
    error: MemvaultError,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The answer to a request refused before GraphQL ran: a GraphQL error whose
    ``extensions.code`` says why, in the media type the client accepts."""
    request.state.code = error.code  # the outcome (metrics, access log)
    extensions: dict[str, Any] = {}
    if status >= 500 or isinstance(error, ServiceUnavailable):
        extensions["requestId"] = request_id_of(request)
    media = response_type(request.headers)
    body = error.as_response(**extensions)
    if media != JSON and status >= 300:  # no data: nothing ran (graphql-response+json's sign)
        del body["data"]
    return JSONResponse(body, status_code=status, headers=headers, media_type=media)


def refused_by_view(request: Request, exc: HTTPException) -> JSONResponse:
    """Strawberry's refusal (plain text there) as a GraphQL error."""
    if exc.status_code == 405:
        allow = "POST" if request.method == "GET" else "GET, POST"
        return refusal(request, 405, MethodNotAllowed(exc.reason), {"Allow": allow})
    if exc.status_code == 404:  # GraphiQL's page while MEMVAULT_GRAPHIQL=false
        return refusal(request, 404, NotFound(exc.reason))
    return refusal(request, exc.status_code, BadRequest(exc.reason))


def request_id_of(request: Request | WebSocket) -> str:
    """This request's id (``observe.py`` sets it as a request arrives; made here otherwise):
    shown to clients with masked errors, logged, and echoed in ``X-Request-Id``."""
    request_id: str | None = getattr(request.state, "request_id", None)
    if request_id is None:
        request_id = request.state.request_id = request_id_for(request.headers.get("x-request-id"))
    return request_id


@dataclass(frozen=True, slots=True)
class Operation:
    """One GraphQL operation from a JSON body."""

    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None


def plain_operation(
    headers: Headers, body: bytes, decode: Callable[[bytes], object]
) -> Operation | None:
    """The operation of a POST whose JSON body holds exactly one well-formed operation and
    that asks for a plain JSON answer; None when Strawberry's view must answer (other content
    types, streaming ``Accept`` headers, batches, malformed or mistyped bodies, no query)."""
    content_type = headers.get("content-type", "")
    if content_type.partition(";")[0].strip() != "application/json":  # case as the view's test
        return None
    accept = headers.get("accept", "")
    if "multipart" in accept or "event-stream" in accept:
        return None
    try:
        data = decode(body)
    except ValueError:  # the view answers 400, with its own message
        return None
    if type(data) is not dict:
        return None
    query = data.get("query")
    variables = data.get("variables")
    name = data.get("operationName")
    extensions = data.get("extensions")
    if type(query) is not str or not query:
        return None
    if not (variables is None or type(variables) is dict):
        return None
    if not (extensions is None or type(extensions) is dict):
        return None
    if not (name is None or type(name) is str) or (name and SURROGATE.search(name)):
        return None  # (the view answers a name with a lone surrogate, see parse_json)
    return Operation(query, variables, name, extensions)
