"""The client's one exception family, keyed by the server's ``extensions.code``.

Every error the client raises for a failed call is a ``MemvaultClientError`` (``APIError`` is the
same class, under the name Zep's SDK used). The server's message is the exception's message; its
code, HTTP status, the offending input field and the request id (for server-side failures) are
attributes. ``MemvaultConnectionError`` is also a ``ConnectionError``, as Zep's SDK raised.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MemvaultClientError(Exception):
    """Base of every error the client raises for a call that failed.

    ``transient``: the same call may succeed later (the client retries these itself where it is
    safe). ``may_have_run``: the server may have carried the request out (False only when the
    request is known not to have been executed: the connection was never made, or the server
    refused it before running it).
    """

    code: ClassVar[str] = "UNKNOWN"
    transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        field: str | None = None,
        request_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        may_have_run: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = code or self.code
        self.status_code = status_code
        self.field = field
        self.request_id = request_id
        self.errors = errors or []
        self.may_have_run = may_have_run
        self.attempts = 1  # how many times the client sent the call; set by the transport

    def __str__(self) -> str:
        details = [self.error_code]
        if self.field:
            details.append(f"field {self.field}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        return f"{self.message} ({', '.join(details)})"


APIError = MemvaultClientError


class BadRequestError(MemvaultClientError):
    """BAD_USER_INPUT: the input broke a rule; ``field`` names it."""

    code = "BAD_USER_INPUT"


class GraphQLDocumentError(BadRequestError):
    """GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED / QUERY_TOO_COMPLEX: the server refused
    the document itself (a client that does not match the server's schema, or a query limit:
    QUERY_TOO_COMPLEX is the cost limit, its message gives the cost)."""

    code = "GRAPHQL_VALIDATION_FAILED"


class PayloadTooLargeError(BadRequestError):
    """PAYLOAD_TOO_LARGE: the request body is over the server's limit (HTTP 413), or the
    response would be (HTTP 200: the call ran; ask for less)."""

    code = "PAYLOAD_TOO_LARGE"


class NotFoundError(MemvaultClientError):
    """NOT_FOUND: no live item with that id."""

    code = "NOT_FOUND"


class ConflictError(MemvaultClientError):
    """CONFLICT: the write contradicts what is stored (e.g. a message uuid of another session)."""

    code = "CONFLICT"


class AlreadyExistsError(ConflictError):
    """ALREADY_EXISTS: a live item already has that id."""

    code = "ALREADY_EXISTS"


class AuthenticationError(MemvaultClientError):
    """UNAUTHENTICATED: the API key is missing, unknown or revoked (HTTP 401)."""

    code = "UNAUTHENTICATED"


class PermissionDeniedError(MemvaultClientError):
    """FORBIDDEN: the API key's scope does not allow the call."""

    code = "FORBIDDEN"


class ServiceUnavailableError(MemvaultClientError):
    """SERVICE_UNAVAILABLE (or HTTP 502-504): the server or its database is unreachable now."""

    code = "SERVICE_UNAVAILABLE"
    transient = True


class InternalServerError(MemvaultClientError):
    """INTERNAL_SERVER_ERROR: an unexpected failure on the server; ``request_id`` finds it in the
    server's log."""

    code = "INTERNAL_SERVER_ERROR"


class UnexpectedResponseError(MemvaultClientError):
    """The server answered with something that is not a GraphQL response the client knows."""

    code = "UNEXPECTED_RESPONSE"


class MemvaultConnectionError(MemvaultClientError, ConnectionError):
    """The server could not be reached, or the connection failed before an answer (timeouts
    included)."""

    code = "CONNECTION_ERROR"
    transient = True


_BY_CODE: dict[str, type[MemvaultClientError]] = {
    cls.code: cls
    for cls in (
        BadRequestError,
        PayloadTooLargeError,
        NotFoundError,
        ConflictError,
        AlreadyExistsError,
        AuthenticationError,
        PermissionDeniedError,
        ServiceUnavailableError,
        InternalServerError,
    )
}
_BY_CODE["GRAPHQL_PARSE_FAILED"] = GraphQLDocumentError
_BY_CODE["GRAPHQL_VALIDATION_FAILED"] = GraphQLDocumentError
_BY_CODE["QUERY_TOO_COMPLEX"] = GraphQLDocumentError


def error_class(code: str | None) -> type[MemvaultClientError]:
    """The exception class for an ``extensions.code`` (the base class for an unknown one)."""
    return _BY_CODE.get(code or "", MemvaultClientError)
