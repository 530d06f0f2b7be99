"""The GraphQL schema, built from settings (limits); ``schema`` has the defaults."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import strawberry
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig

from app.config import Settings
from app.schema.errors import error_code, is_expected
from app.schema.mutation import Mutation
from app.schema.query import Query
from app.schema.types import SCALARS, Memory, Session, User

if TYPE_CHECKING:
    from graphql import GraphQLError
    from strawberry.types import ExecutionContext

log = logging.getLogger("memvault.graphql")


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
    """The schema with the query limits of ``settings`` (extensions passed as factories)."""
    limits = settings or Settings()
    return MemvaultSchema(
        query=Query,
        mutation=Mutation,
        types=[User, Session, Memory],
        config=StrawberryConfig(scalar_map=SCALARS, disable_field_suggestions=True),
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
            lambda: QueryDepthLimiter(max_depth=limits.max_query_depth),
            lambda: MaxAliasesLimiter(max_alias_count=limits.max_aliases),
        ],
    )


schema = build_schema()
