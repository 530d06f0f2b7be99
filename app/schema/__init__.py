"""The GraphQL schema, built from settings (limits); ``schema`` has the defaults."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig

from memvault.config import Settings
from memvault.schema import fastpath
from memvault.schema._upstream import get_operation_type
from memvault.schema.cost import QueryCost, cost_limited
from memvault.schema.errors import error_code, is_expected
from memvault.schema.limits import limit_extensions, only_operation_name, parse_limited
from memvault.schema.mutation import Mutation
from memvault.schema.query import Query
from memvault.schema.subscription import Subscription
from memvault.schema.types import SCALARS, Memory, Session, User

if TYPE_CHECKING:
    from collections.abc import Iterable

    from strawberry.types import ExecutionContext, ExecutionResult

    from memvault.schema._upstream import OperationType
    from memvault.schema.fastpath.document_cache import DocumentStore

log = logging.getLogger("memvault.graphql")


class MemvaultSchema(strawberry.Schema):
    """Strawberry's schema, requiring an operation name for a document of several operations,
    logging only unexpected errors. With the fast path (:func:`fastpath.install`) it holds the
    document store and :attr:`fast_path` is True."""

    settings: Settings
    documents: DocumentStore | None = None
    fast_path: bool = False

    async def execute(  # Strawberry's signature
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Strawberry's ``execute``, except that a document of several operations needs an
        operation name (:class:`OperationNameRequired`; Strawberry would run the first)."""
        if operation_name is None and query:
            with contextlib.suppress(GraphQLError):  # Strawberry's execute reports it
                self.check_document(query, operation_name)
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    def check_document(self, query: str, operation_name: str | None) -> OperationType | None:
        """The type of the operation ``query`` runs (None when it has no such operation: the
        execution reports it); a ``GraphQLSyntaxError`` when it does not parse within the limits,
        :class:`OperationNameRequired` when it has several operations and no ``operation_name``
        (also for streaming transports: Strawberry's ``stream`` would run the first)."""
        document = (
            self.documents.parse(query)
            if self.documents is not None
            else parse_limited(query, self.settings)
        )
        name = operation_name if operation_name is not None else only_operation_name(document)
        try:
            return get_operation_type(document, name)
        except RuntimeError:
            return None

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        self.log_errors(errors, execution_context.context if execution_context else None)

    def log_errors(self, errors: list[GraphQLError], context: Any) -> None:
        """Log the unexpected errors, with the request id the client is shown, then drop every
        error's traceback: its frames refer to the executor, which refers to the errors, a cycle
        that would keep the whole request alive until the next garbage collection."""
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


def build_schema(settings: Settings | None = None, **options: Any) -> MemvaultSchema:
    """The schema with the query limits of ``settings``, and the fast path unless it is off or
    refused (see ``fastpath``): then plain Strawberry, with the same limits as extensions.
    ``options`` go to Strawberry's ``Schema`` (a test's extensions, handlers, config...).

    The cost limit is in the executor either way: it refuses an operation over the limit as
    execution starts, with its variables (see ``cost.py``).
    """
    limits = settings or Settings()
    built = MemvaultSchema(
        **{
            "query": Query,
            "mutation": Mutation,
            "subscription": Subscription,
            "types": [User, Session, Memory],
            "config": StrawberryConfig(scalar_map=SCALARS, disable_field_suggestions=True),
            "execution_context_class": cost_limited(QueryCost(limits)),
            **options,
        }
    )
    built.settings = limits
    if not fastpath.install(built, limits):
        built.extensions = (*limit_extensions(limits), *built.extensions)
    return built


schema = build_schema()
