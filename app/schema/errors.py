"""Mapping every GraphQL error to one ``extensions.code``; masking the unexpected."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from pymongo.errors import ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

from memvault.errors import MemvaultError

log = logging.getLogger("memvault.errors")

UNAVAILABLE = (ConnectionFailure, ServerSelectionTimeoutError)


class OperationNameRequired(Exception):
    """A document of several operations came without an operation name. The views answer it
    with HTTP 400, as an unknown operation name, and a GraphQL error in the body (its code is
    GRAPHQL_VALIDATION_FAILED, like every error about the document before execution)."""

    message = "Must provide operation name if query contains multiple operations."  # graphql-core's

    def __init__(self) -> None:
        super().__init__(self.message)

    def as_graphql_error(self) -> GraphQLError:
        return GraphQLError(self.message)


def error_code(error: GraphQLError) -> str:
    """The ``extensions.code`` for an error raised anywhere in handling a request."""
    original = error.original_error
    if isinstance(original, MemvaultError):
        return original.code
    if isinstance(original, UNAVAILABLE):
        return "SERVICE_UNAVAILABLE"
    if isinstance(original, PyMongoError) and original.timeout:  # past MEMVAULT_DB_TIMEOUT_MS
        return "SERVICE_UNAVAILABLE"
    if not error.path:  # raised before execution: parsing, validation, variable coercion
        if error.message.startswith("Syntax Error"):
            return "GRAPHQL_PARSE_FAILED"
        if error.message.startswith("Variable '$"):
            return "BAD_USER_INPUT"
        return "GRAPHQL_VALIDATION_FAILED"
    return "INTERNAL_SERVER_ERROR"


def is_expected(error: GraphQLError) -> bool:
    return error_code(error) != "INTERNAL_SERVER_ERROR"


def format_error(error: GraphQLError, *, request_id: str) -> dict[str, Any]:
    """The error as the client sees it: unexpected ones say only that, with the request id."""
    code = error_code(error)
    formatted: dict[str, Any] = dict(error.formatted)
    if code == "INTERNAL_SERVER_ERROR":
        formatted["message"] = f"Internal server error (request id {request_id})"
    elif code == "SERVICE_UNAVAILABLE":
        formatted["message"] = "The database is unavailable; try again shortly"
    extensions: dict[str, Any] = {"code": code}
    original = error.original_error
    if isinstance(original, MemvaultError) and original.field:
        extensions["field"] = original.field
    if code in {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"}:
        extensions["requestId"] = request_id
    formatted["extensions"] = extensions
    return formatted
