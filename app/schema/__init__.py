"""The GraphQL schema, built from settings (limits); ``schema`` has the defaults."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import strawberry
from graphql import ExecutionResult as GraphQLCoreResult
from graphql import GraphQLError, OperationDefinitionNode, execute, specified_rules
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import max_aliases, query_depth_limiter
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.utils.operation import get_operation_type

from memvault.config import Settings
from memvault.schema.cost import QueryCost, cost_limited
from memvault.schema.document_cache import DocumentCache, DocumentStore
from memvault.schema.errors import OperationNameRequired, error_code, is_expected
from memvault.schema.executor import optimise
from memvault.schema.mutation import Mutation
from memvault.schema.query import Query
from memvault.schema.types import SCALARS, Memory, Session, User

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    from graphql import ASTValidationRule, DocumentNode
    from strawberry.types import ExecutionContext

log = logging.getLogger("memvault.graphql")

# Distinct documents whose parse and validation are cached (clients send a few fixed documents),
# and the estimated bytes they may hold together (a document of 5,000 tokens holds about 3 MB).
DOCUMENT_CACHE_SIZE = 512
DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024


SPECIFIED_RULES = tuple(specified_rules)


class MemvaultSchema(strawberry.Schema):
    """Strawberry's schema with :meth:`execute_lean`, logging only unexpected errors."""

    documents: DocumentStore

    async def execute_lean(
        self,
        query: str,
        *,
        variable_values: dict[str, Any] | None,
        context_value: Any,
        operation_name: str | None,
        allowed_operation_types: Collection[OperationType],
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """What :meth:`execute` answers, without Strawberry's per-request extension machinery.

        The schema's one extension only serves parse and validation results from
        :attr:`documents`; this does the same directly, then runs graphql-core's ``execute`` with
        exactly the arguments Strawberry passes (the operation name included: for a document
        without one, the name of its only operation). It raises as :meth:`execute` does.
        ``tests/test_endpoint.py`` checks the two give the same answers.
        """
        try:
            document = self.documents.parse(query)
        except Exception as exc:  # a GraphQLError for bad syntax, too many tokens or bytes
            return self._failed([_as_graphql_error(exc)], context_value)
        name = operation_name if operation_name is not None else _only_operation_name(document)
        try:
            operation_type = get_operation_type(document, name)
        except RuntimeError as exc:
            raise CannotGetOperationTypeError(name) from exc
        if operation_type not in allowed_operation_types:
            raise InvalidOperationTypeError(operation_type)
        invalid = self.documents.errors(query, self._schema, SPECIFIED_RULES)
        if invalid:
            return self._failed(invalid, context_value)
        try:
            outcome = execute(
                self._schema,
                document,
                variable_values=variable_values,
                operation_name=name,
                context_value=context_value,
                is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]  # as Strawberry
                executor_class=self.execution_context_class,
                operation_extensions=operation_extensions,
            )
            result = outcome if isinstance(outcome, GraphQLCoreResult) else await outcome
        except Exception as exc:  # Strawberry answers these as errors too
            return self._failed([_as_graphql_error(exc)], context_value)
        if result.errors:
            self._report(result.errors, context_value)
        return ExecutionResult(data=result.data, errors=result.errors)

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
            try:
                document = self.documents.parse(query)
            except GraphQLError:
                pass  # Strawberry's execute reports it
            else:
                _only_operation_name(document)
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

    def _failed(self, errors: list[GraphQLError], context: Any) -> ExecutionResult:
        self._report(errors, context)
        return ExecutionResult(data=None, errors=errors)

    def _report(self, errors: list[GraphQLError], context: Any) -> None:
        """As Strawberry's ``_process_errors``: field suggestions out, then the log."""
        if self.config.disable_field_suggestions:
            for error in errors:
                self.remove_field_suggestion(error)
        self.log_errors(errors, context)

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


def _as_graphql_error(error: Exception) -> GraphQLError:
    return (
        error if isinstance(error, GraphQLError) else GraphQLError(str(error), original_error=error)
    )


def _only_operation_name(document: DocumentNode) -> str | None:
    """The name of the document's one operation (None when it has none, or is anonymous);
    :class:`OperationNameRequired` when the document has several (the GraphQL spec's rule)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) > 1:
        raise OperationNameRequired
    return operations[0].name.value if operations and operations[0].name else None


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
    distinct document. The executor refuses an operation over the cost limit as execution
    starts, with its variables (see ``cost.py``).
    """
    limits = settings or Settings()
    rules: list[type[ASTValidationRule]] = [
        query_depth_limiter.create_validator(limits.max_query_depth, None),
        max_aliases.create_validator(limits.max_aliases),
    ]
    documents = DocumentStore(
        max_tokens=limits.max_tokens,
        max_bytes=limits.max_query_bytes,
        extra_rules=rules,
        maxsize=DOCUMENT_CACHE_SIZE,
        max_cache_bytes=DOCUMENT_CACHE_BYTES,
    )
    built = MemvaultSchema(
        query=Query,
        mutation=Mutation,
        types=[User, Session, Memory],
        config=StrawberryConfig(scalar_map=SCALARS, disable_field_suggestions=True),
        extensions=[lambda: DocumentCache(documents)],
        execution_context_class=cost_limited(QueryCost(limits)),
    )
    built.documents = documents
    # execute_lean stands in for the extensions' work: it knows this one only
    assert all(isinstance(extension, DocumentCache) for extension in built.get_extensions())
    optimise(built)
    return built


schema = build_schema()
