"""The GraphQL schema, built from settings (limits); ``schema`` has the defaults."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
    max_aliases,
    query_depth_limiter,
)
from strawberry.schema.config import StrawberryConfig

from app.config import Settings
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
    """Logs only unexpected errors, with the request id the client is shown."""

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


def build_schema(settings: Settings | None = None) -> MemvaultSchema:
    """The schema with the query limits of ``settings``.

    Extensions are passed as factories (one instance per request). The limit rules are built
    once, so the validation cache, keyed by the rule classes, hits for a repeated document.
    """
    limits = settings or Settings()
    rules: list[type[ASTValidationRule]] = [
        query_depth_limiter.create_validator(limits.max_query_depth, None),
        max_aliases.create_validator(limits.max_aliases),
    ]
    built = MemvaultSchema(
        query=Query,
        mutation=Mutation,
        types=[User, Session, Memory],
        config=StrawberryConfig(scalar_map=SCALARS, disable_field_suggestions=True),
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
            lambda: AddValidationRules(rules),
            lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE),
            lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
        ],
        execution_context_class=Executor,
    )
    optimise(built)
    return built


schema = build_schema()
