"""The one error family. Each error carries the ``extensions.code`` that clients see."""

from __future__ import annotations

from typing import ClassVar


class MemvaultError(Exception):
    """Base of every error a client may see; ``code`` goes to ``extensions.code``."""

    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


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


class QueryTooComplex(MemvaultError):
    """The operation could answer more objects than ``MEMVAULT_MAX_QUERY_COST`` allows."""

    code = "QUERY_TOO_COMPLEX"


class RequestTimeout(MemvaultError):
    """The client took longer than allowed to send its request (HTTP 408)."""

    code = "REQUEST_TIMEOUT"
