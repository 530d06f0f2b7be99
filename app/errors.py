"""The one error family. Each error carries the ``extensions.code`` that clients see."""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar


class Subject(Enum):
    """What a data-layer error is about, in the data's terms: ``app/db`` raises errors with a
    subject, and ``schema/errors.py`` names the argument it came from (``extensions.field``)."""

    USER_ID = "user_id"
    SESSION_ID = "session_id"
    MEMORY_UUID = "uuid"  # a stored memory's
    NEW_MEMORY_UUID = "new_memory_uuid"  # one of the memories being added
    KEY_ID = "key_id"  # an API key's


class MemvaultError(Exception):
    """Base of every error a client may see; ``code`` goes to ``extensions.code``."""

    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(
        self, message: str, *, field: str | None = None, subject: Subject | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field  # the argument at fault, for errors raised by the API's input checks
        self.subject = subject  # what it is about, for errors raised by the data layer

    def as_response(self, **extensions: Any) -> dict[str, Any]:
        """A GraphQL response holding only this error (for answers given before or instead of
        execution): ``data`` null, ``extensions.code``, and any other ``extensions``."""
        shown = {"message": self.message, "extensions": {"code": self.code, **extensions}}
        return {"data": None, "errors": [shown]}


class BadUserInput(MemvaultError):
    code = "BAD_USER_INPUT"


class NotFound(MemvaultError):
    code = "NOT_FOUND"


class AlreadyExists(MemvaultError):
    code = "ALREADY_EXISTS"


class Conflict(MemvaultError):
    code = "CONFLICT"


class Unauthenticated(MemvaultError):
    code = "UNAUTHENTICATED"


class Forbidden(MemvaultError):
    code = "FORBIDDEN"


class PayloadTooLarge(MemvaultError):
    code = "PAYLOAD_TOO_LARGE"


class ServiceUnavailable(MemvaultError):
    code = "SERVICE_UNAVAILABLE"


def timed_out(seconds: float) -> ServiceUnavailable:
    """What a client is told of an operation stopped at ``MEMVAULT_REQUEST_TIMEOUT``."""
    return ServiceUnavailable(
        f"The request did not finish within {seconds} s (MEMVAULT_REQUEST_TIMEOUT) and was"
        " stopped; ask for less, or try again shortly. A mutation may be partly done:"
        " retry it with the same uuids."
    )


DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly"
"""What a client is told whenever the database does not answer (no driver text)."""


class SubscriberTooSlow(MemvaultError):
    """A subscriber left more changes unread than ``MEMVAULT_SUBSCRIPTION_QUEUE_LIMIT``."""

    code = "SUBSCRIBER_TOO_SLOW"


class TooManySubscriptions(MemvaultError):
    """One connection asked for more than ``MEMVAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION``."""

    code = "TOO_MANY_SUBSCRIPTIONS"


class QueryTooComplex(MemvaultError):
    """The operation could answer more objects than ``MEMVAULT_MAX_QUERY_COST`` allows."""

    code = "QUERY_TOO_COMPLEX"


class RequestTimeout(MemvaultError):
    """The client took longer than allowed to send its request (HTTP 408)."""

    code = "REQUEST_TIMEOUT"


class BadRequest(MemvaultError):
    """The HTTP request holds no GraphQL request (a body that is not JSON, no query, ...)."""

    code = "BAD_REQUEST"


class MethodNotAllowed(MemvaultError):
    """HTTP 405: a method other than GET and POST, or a mutation over GET."""

    code = "METHOD_NOT_ALLOWED"


class UnsupportedMediaType(MemvaultError):
    """HTTP 415: a POST body that is not ``application/json``."""

    code = "UNSUPPORTED_MEDIA_TYPE"


class PersistedQueryNotFound(MemvaultError):
    """A persisted query's hash sent alone that no stored document has (Apollo's APQ: the
    client sends the query with it next). HTTP 200, as Apollo Server answers."""

    code = "PERSISTED_QUERY_NOT_FOUND"


class PersistedQueryNotAllowed(MemvaultError):
    """``MEMVAULT_PERSISTED_ONLY``: a document that is not registered (HTTP 400)."""

    code = "PERSISTED_QUERY_NOT_ALLOWED"
