"""Lean execution: what Strawberry's ``Schema.execute`` answers, without its per-request
extension machinery.

The fast path's one schema extension only serves parse and validation results from the schema's
document store; :func:`execute_lean` does the same directly, then runs graphql-core's ``execute``
with exactly the arguments Strawberry passes. The HTTP view's direct path uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphql import ExecutionResult as GraphQLCoreResult
from graphql import GraphQLError, execute, specified_rules
from strawberry.types import ExecutionResult

from memvault.schema._upstream import (
    CannotGetOperationTypeError,
    InvalidOperationTypeError,
    get_operation_type,
    graphql_schema,
    optimized_is_awaitable,
)
from memvault.schema.limits import only_operation_name

if TYPE_CHECKING:
    from collections.abc import Collection

    from memvault.schema import MemvaultSchema
    from memvault.schema._upstream import OperationType

SPECIFIED_RULES = tuple(specified_rules)


async def execute_lean(
    schema: MemvaultSchema,
    query: str,
    *,
    variable_values: dict[str, Any] | None,
    context_value: Any,
    operation_name: str | None,
    allowed_operation_types: Collection[OperationType],
    operation_extensions: dict[str, Any] | None = None,
) -> ExecutionResult:
    """What ``schema.execute`` answers (the operation name included: for a document without
    one, the name of its only operation); it raises as that does. Only for a schema with the
    fast path installed. ``tests/api/test_endpoint.py`` checks the two give the same answers.
    """
    documents = schema.documents
    assert documents is not None, "execute_lean needs the fast path's document store"
    try:
        document = documents.parse(query)
    except Exception as exc:  # a GraphQLError for bad syntax, too many tokens or bytes
        return _failed(schema, [_as_graphql_error(exc)], context_value)
    name = operation_name if operation_name is not None else only_operation_name(document)
    try:
        operation_type = get_operation_type(document, name)
    except RuntimeError as exc:
        raise CannotGetOperationTypeError(name) from exc
    if operation_type not in allowed_operation_types:
        raise InvalidOperationTypeError(operation_type)
    graphql = graphql_schema(schema)
    invalid = documents.errors(query, graphql, SPECIFIED_RULES)
    if invalid:
        return _failed(schema, invalid, context_value)
    try:
        outcome = execute(
            graphql,
            document,
            variable_values=variable_values,
            operation_name=name,
            context_value=context_value,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]  # as Strawberry
            executor_class=schema.execution_context_class,
            operation_extensions=operation_extensions,
        )
        result = outcome if isinstance(outcome, GraphQLCoreResult) else await outcome
    except Exception as exc:  # Strawberry answers these as errors too
        return _failed(schema, [_as_graphql_error(exc)], context_value)
    if result.errors:
        _report(schema, result.errors, context_value)
    return ExecutionResult(data=result.data, errors=result.errors)


def _failed(schema: MemvaultSchema, errors: list[GraphQLError], context: Any) -> ExecutionResult:
    _report(schema, errors, context)
    return ExecutionResult(data=None, errors=errors)


def _report(schema: MemvaultSchema, errors: list[GraphQLError], context: Any) -> None:
    """As Strawberry's ``_process_errors``: field suggestions out, then the log."""
    if schema.config.disable_field_suggestions:
        for error in errors:
            schema.remove_field_suggestion(error)
    schema.log_errors(errors, context)


def _as_graphql_error(error: Exception) -> GraphQLError:
    return (
        error if isinstance(error, GraphQLError) else GraphQLError(str(error), original_error=error)
    )
