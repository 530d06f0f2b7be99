"""Mapping every GraphQL error to one ``extensions.code``; masking the unexpected."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, TypeVar

from graphql import GraphQLError, GraphQLSyntaxError

from memvault.db.errors import is_unavailable
from memvault.errors import DATABASE_UNAVAILABLE, MemvaultError, Subject

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger("memvault.errors")
# graphql-core appends its suggestions to the message: " Did you mean 'x' or 'y'?"
SUGGESTION = re.compile(r" Did you mean .*\?$", re.DOTALL)

ARGUMENTS = {
    Subject.USER_ID: "userId",
    Subject.SESSION_ID: "sessionId",
    Subject.MEMORY_UUID: "uuid",
    Subject.NEW_MEMORY_UUID: "memories.uuid",
}
"""The argument each subject of a data-layer error comes from (``extensions.field``)."""


class DocumentInvalid(GraphQLError):
    """An error about the document, found before it runs (validation, operation choice):
    GRAPHQL_VALIDATION_FAILED."""


class VariablesInvalid(GraphQLError):
    """An error about the variables' values, found as execution starts: BAD_USER_INPUT."""


Marked = TypeVar("Marked", bound=GraphQLError)


def marked(errors: Iterable[GraphQLError], kind: type[Marked]) -> list[Marked]:
    """``errors`` as ``kind``, where they are produced, so that :func:`error_code` knows them
    by type."""
    return [
        error
        if isinstance(error, kind)
        else kind(
            error.message,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            error.original_error,
            error.extensions,
        )
        for error in errors
    ]


class OperationNameRequired(Exception):
    """A document of several operations came without an operation name. The views answer it
    with HTTP 400, as an unknown operation name, and a GraphQL error in the body (its code is
    GRAPHQL_VALIDATION_FAILED, like every error about the document before execution)."""

    message = "Must provide operation name if query contains multiple operations."  # graphql-core's

    def __init__(self) -> None:
        super().__init__(self.message)

    def as_graphql_error(self) -> DocumentInvalid:
        return DocumentInvalid(self.message)


def error_code(error: GraphQLError) -> str:
    """The ``extensions.code`` for an error raised anywhere in handling a request."""
    original = error.original_error
    if isinstance(original, MemvaultError):
        return original.code
    if original is not None and is_unavailable(original):
        return "SERVICE_UNAVAILABLE"
    if isinstance(error, GraphQLSyntaxError):  # bad syntax, too many tokens or bytes
        return "GRAPHQL_PARSE_FAILED"
    if isinstance(error, VariablesInvalid):
        return "BAD_USER_INPUT"
    if isinstance(error, DocumentInvalid) or not error.path:
        # and graphql-core's other errors before execution (an operation it cannot choose)
        return "GRAPHQL_VALIDATION_FAILED"
    return "INTERNAL_SERVER_ERROR"


def argument_of(error: MemvaultError) -> str | None:
    """The argument an error is about: the one an input check named, or the one its data-layer
    subject comes from."""
    if error.field or error.subject is None:
        return error.field
    return ARGUMENTS.get(error.subject)


def is_expected(error: GraphQLError) -> bool:
    return error_code(error) != "INTERNAL_SERVER_ERROR"


def format_error(error: GraphQLError, *, request_id: str) -> dict[str, Any]:
    """The error as the client sees it: unexpected ones say only that, with the request id."""
    code = error_code(error)
    formatted: dict[str, Any] = dict(error.formatted)
    if code == "INTERNAL_SERVER_ERROR":
        formatted["message"] = f"Internal server error (request id {request_id})"
    elif code == "SERVICE_UNAVAILABLE":
        formatted["message"] = DATABASE_UNAVAILABLE
    elif not isinstance(error.original_error, MemvaultError):
        # graphql-core's: no "Did you mean ...?" (names of fields, arguments, types, enum
        # values), which would map the schema for a caller without introspection
        formatted["message"] = SUGGESTION.sub("", error.message)
    extensions: dict[str, Any] = {"code": code}
    original = error.original_error
    field = argument_of(original) if isinstance(original, MemvaultError) else None
    if field:
        extensions["field"] = field
    if code in {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"}:
        extensions["requestId"] = request_id
    formatted["extensions"] = extensions
    return formatted
