"""Every name of Strawberry, graphql-core and cross_web that memvault uses and they do not document
as API, in one place (as Strawberry's own ``schema/_graphql_core.py``).

Nothing else in ``app/`` imports these paths or touches these attributes (``tests/fastpath/
test_upstream.py`` checks that, and that each name below still exists with the expected kind):
an upgrade that moves or changes one of them fails there, loudly. Their public API
(``strawberry.type``, ``strawberry.Schema``, ``graphql.parse``, ``graphql.GraphQLError``...) is
imported where it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cross_web import (
    AsyncHTTPRequestAdapter,  # the signature of the view's execute_single
    HTTPException,  # what Strawberry's views answer request errors with (our 400s too)
)
from graphql.execution.collect_fields import (
    FieldDetailsList,  # the signatures of the executor hooks
    GroupedFieldSet,  # what collect_subfields returns: a list item's fields
)
from graphql.pyutils import (
    AwaitableOrValue,  # the signatures of the executor hooks
    Path,  # the signatures of the executor hooks
)
from strawberry.execution import (
    optimized_is_awaitable,  # the is_awaitable Strawberry executes with (execute_lean too)
)
from strawberry.extensions.max_aliases import (
    create_validator as max_aliases_rule,  # MaxAliasesLimiter's rule, made once per schema
)
from strawberry.extensions.query_depth_limiter import (
    create_validator as query_depth_rule,  # QueryDepthLimiter's rule, made once per schema
)
from strawberry.http import (
    GraphQLRequestData,  # the signature of the view's execute_single
)
from strawberry.schema.exceptions import (
    CannotGetOperationTypeError,  # Strawberry's execute raises it; the views answer 400
    InvalidOperationTypeError,  # Strawberry's execute raises it; the views answer 400
)
from strawberry.schema.schema import (
    StrawberryGraphQLCoreExecutionContext,  # subclassed: executor fast path and cost limit
    validate_document,  # graphql-core's validate plus Strawberry's rules (@oneOf, Maybe)
)
from strawberry.schema.schema_converter import (
    GraphQLCoreConverter,  # its DEFINITION_BACKREF, below
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,  # subclassed: authentication, limits and our error format
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    Operation as TransportWSOperation,  # subclassed: results sent with our error format
)
from strawberry.types.base import (
    StrawberryOptional,  # lean resolvers unwrap an argument's optional type
)
from strawberry.types.field import (
    StrawberryField,  # what the executor fast path and the lean resolvers read
)
from strawberry.types.graphql import (
    OperationType,  # query / mutation / subscription: the operations a request may run
)
from strawberry.types.scalar import (
    ScalarDefinition,  # what strawberry.scalar() returns: the values of scalar_map
)
from strawberry.utils.operation import (
    get_operation_type,  # an operation's type, by name (as Strawberry's execute finds it)
)

if TYPE_CHECKING:
    import strawberry
    from graphql import GraphQLResolveInfo, GraphQLSchema
    from strawberry.types import Info

# The key of graphql-core field extensions holding their Strawberry field (Strawberry's converter).
DEFINITION_BACKREF: str = GraphQLCoreConverter.DEFINITION_BACKREF

EXECUTOR_METHODS = (
    "execute_field",  # overridden: plain leaves completed in place
    "complete_list_value",  # overridden: lists of plain objects completed in one loop
    "collect_subfields",  # called: a list item's grouped field set
    "execute_operation",  # overridden: the cost limit refuses before anything runs
    "gather_async_work",  # called (weakly) by the resolve-info helpers
    "track_async_work",  # called (weakly) by the resolve-info helpers
)
"""Methods of :data:`StrawberryGraphQLCoreExecutionContext` memvault overrides or calls."""

EXECUTOR_ATTRIBUTES = (
    "async_helpers",  # replaced: helpers holding the executor weakly
    "middleware_manager",  # read: shortcuts are off when a middleware must see every field
    "schema",  # read by the cost limit, with the three below
    "operation",
    "fragment_definitions",
    "variable_values",  # its ``coerced`` mapping
)
"""Attributes of an execution context memvault reads or replaces."""

VIEW_METHODS = (
    "execute_single",  # overridden: OperationNameRequired answered as HTTP 400
    "parse_json",  # overridden: a body that is no JSON object or array is a 400
)
"""Methods of Strawberry's ASGI view memvault overrides that Strawberry does not document."""

WS_HANDLER_METHODS = (
    "handle_connection_init",  # overridden: the API key is checked before the ack
    "handle_subscribe",  # overridden: the per-connection limit, with our operation class
    "run_operation",  # called by handle_subscribe, as Strawberry's does
    "_task_done",  # called by handle_subscribe, as Strawberry's does
)
"""Methods of Strawberry's graphql-transport-ws handler memvault overrides or calls."""

SCHEMA_METHODS = (
    "remove_field_suggestion",  # called: as Strawberry's _process_errors, by execute_lean
    "get_extensions",  # called: the fast path checks what would run per request
)
"""Methods of ``strawberry.Schema`` memvault calls that Strawberry does not document."""


def graphql_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema Strawberry built (its ``_schema``)."""
    built: GraphQLSchema = schema._schema
    return built


def raw_info(info: Info[Any, Any]) -> GraphQLResolveInfo[Any]:
    """graphql-core's resolve info behind Strawberry's ``Info`` (field nodes, fragments,
    coerced variables)."""
    return info._raw_info


def make_info(
    info_class: type[Info[Any, Any]], raw: GraphQLResolveInfo[Any], field: StrawberryField
) -> Info[Any, Any]:
    """Strawberry's ``Info`` for ``field``, as its resolver wrapper builds it."""
    return info_class(_raw_info=raw, _field=field)


__all__ = [
    "DEFINITION_BACKREF",
    "EXECUTOR_ATTRIBUTES",
    "EXECUTOR_METHODS",
    "SCHEMA_METHODS",
    "VIEW_METHODS",
    "WS_HANDLER_METHODS",
    "AsyncHTTPRequestAdapter",
    "AwaitableOrValue",
    "BaseGraphQLTransportWSHandler",
    "CannotGetOperationTypeError",
    "FieldDetailsList",
    "GraphQLRequestData",
    "GroupedFieldSet",
    "HTTPException",
    "InvalidOperationTypeError",
    "OperationType",
    "Path",
    "ScalarDefinition",
    "StrawberryField",
    "StrawberryGraphQLCoreExecutionContext",
    "StrawberryOptional",
    "TransportWSOperation",
    "get_operation_type",
    "graphql_schema",
    "make_info",
    "max_aliases_rule",
    "optimized_is_awaitable",
    "query_depth_rule",
    "raw_info",
    "validate_document",
]
