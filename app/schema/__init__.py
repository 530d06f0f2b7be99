"""The GraphQL schema, built from settings (limits); ``schema`` has the defaults."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import strawberry
from strawberry.extensions import max_aliases, query_depth_limiter
from strawberry.schema.config import StrawberryConfig

from app.config import Settings
from app.schema.document_cache import DocumentCache, DocumentStore
from app.schema.errors import error_code, is_expected
from app.schema.executor import Executor, optimise
from app.schema.mutation import Mutation
from app.schema.query import Query
from app.schema.types import SCALARS, Memory, Session, User

if TYPE_CHECKING:
    from graphql import ASTValidationRule, GraphQLError
    from strawberry.types import ExecutionContext

log = logging.getLogger("memvault.graphql")

# Distinct documents whose parse and validation are cached (clients send a few fixed documents).
DOCUMENT_CACHE_SIZE = 512


class MemvaultSchema(strawberry.Schema):
    """Logs only unexpected errors, with the request id the client is shown, then drops their
    tracebacks: their frames refer to the executor, which refers to the errors, a cycle that
    would keep the whole request alive until the next garbage collection."""

    documents: DocumentStore

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        context: Any = execution_context.context if execution_context else None
        request_id = getattr(context, "request_id", "-")
        for error in errors:
            if not is_expected(error):
                log.error(
                    "request %s failed (%s)",
                    request_id,
                    error_code(error),
                    exc_info=error.original_error or error,
                )
            _drop_tracebacks(error)


def _drop_tracebacks(error: BaseException) -> None:
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += [current.__cause__, current.__context__]
        pending.append(getattr(current, "original_error", None))


def build_schema(settings: Settings | None = None) -> MemvaultSchema:
    """The schema with the query limits of ``settings``.

    Extensions are passed as factories (one instance per request); the document store they
    share parses with the token limit and validates with the depth and alias limits, once per
    distinct document.
    """
    limits = settings or Settings()
    rules: list[type[ASTValidationRule]] = [
        query_depth_limiter.create_validator(limits.max_query_depth, None),
        max_aliases.create_validator(limits.max_aliases),
    ]
    documents = DocumentStore(
        max_tokens=limits.max_tokens, extra_rules=rules, maxsize=DOCUMENT_CACHE_SIZE
    )
    built = MemvaultSchema(
        query=Query,
        mutation=Mutation,
        types=[User, Session, Memory],
        config=StrawberryConfig(scalar_map=SCALARS, disable_field_suggestions=True),
        extensions=[lambda: DocumentCache(documents)],
        execution_context_class=Executor,
    )
    built.documents = documents
    optimise(built)
    return built


schema = build_schema()
