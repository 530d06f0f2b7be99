"""Query cost: how many objects an operation can answer, refused above ``MEMVAULT_MAX_QUERY_COST``.

The cost of a selection is the sum, over its fields that return objects, of ``n * (1 + the cost
of the field's own selection)``, where ``n`` is how many objects the field can return:

- ``edges``/``nodes`` of a connection: its page size (``first`` or ``last``, else
  ``MEMVAULT_DEFAULT_PAGE_SIZE``; at most ``MEMVAULT_MAX_PAGE_SIZE``);
- ``addMemories { memories }``: the number of memories given (at most
  ``MEMVAULT_MAX_MEMORIES_PER_CALL``);
- a list of the introspection schema: the longest such list in the schema;
- any other field: 1.

Scalar fields cost nothing. Every alias, fragment spread and inline fragment counts on its own
(``@skip``/``@include`` are not evaluated), so the cost bounds the objects in the answer, and so
the work. Variables count with their values: the cost is checked when execution starts, with the
coerced variables, before any resolver runs. Per operation (as parsed and cached by the document
store) the cost with every variable at its largest is kept: when that is within the limit, which
is the case for the documents clients send, a request costs one lookup.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLObjectType,
    GraphQLUnionType,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    value_from_ast_untyped,
)

from memvault.errors import QueryTooComplex
from memvault.schema._upstream import StrawberryGraphQLCoreExecutionContext
from memvault.schema.errors import VariablesInvalid, marked

if TYPE_CHECKING:
    from collections.abc import Mapping

    from graphql import (
        Executor,
        ExperimentalIncrementalExecutionResults,
        FragmentDefinitionNode,
        GraphQLField,
        GraphQLNamedType,
        GraphQLSchema,
        OperationDefinitionNode,
        SelectionSetNode,
        ValueNode,
    )

    from memvault.config import Settings
    from memvault.schema._upstream import AwaitableOrValue

SATURATED = 10**15
"""Costs are counted up to this (a document of nested fragments could express far more)."""

PAGE_ARGUMENTS = ("first", "last")
INPUT_LISTS = {"addMemories": "memories"}
"""Mutation fields whose payload lists are as long as a list in their ``input``."""


class QueryCost:
    """The cost model of one schema's settings; :meth:`refusal` is the check."""

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.max_query_cost
        self.default_page_size = settings.default_page_size
        self.max_page_size = settings.max_page_size
        self.max_input_list = settings.max_memories_per_call
        # Per operation node: the cost with every variable at its largest. Entries go with the
        # node (when the document store lets its document go).
        self._worst: dict[int, tuple[weakref.ref[OperationDefinitionNode], int]] = {}
        self._introspection: tuple[GraphQLSchema, dict[str, int]] | None = None

    def refusal(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> GraphQLError | None:
        """The QUERY_TOO_COMPLEX error for ``operation``, or None when its cost is allowed."""
        if self.worst(schema, operation, fragments) <= self.limit:
            return None
        cost = self.of(schema, operation, fragments, variables)
        if cost <= self.limit:
            return None
        shown = f"more than {SATURATED}" if cost >= SATURATED else str(cost)
        message = (
            f"The query's cost is {shown}, over the limit of {self.limit}"
            " (MEMVAULT_MAX_QUERY_COST): it could answer that many objects. Ask for smaller"
            " pages (first/last), fewer nested connections or fewer aliases."
        )
        return GraphQLError(message, operation, original_error=QueryTooComplex(message))

    def worst(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
    ) -> int:
        """The cost of ``operation`` with every variable at its largest (kept per operation)."""
        key = id(operation)
        kept = self._worst.get(key)
        if kept is not None and kept[0]() is operation:
            return kept[1]
        cost = self.of(schema, operation, fragments, None)
        worst = self._worst
        worst[key] = (weakref.ref(operation, lambda _: worst.pop(key, None)), cost)
        return cost

    def of(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any] | None,
    ) -> int:
        """The cost of ``operation``; with ``variables`` None, each variable at its largest."""
        root = schema.get_root_type(operation.operation)
        if root is None:
            return 0
        walk = _Walk(self, schema, fragments, variables)
        return walk.selections(root, operation.selection_set, None)

    def introspection_sizes(self, schema: GraphQLSchema) -> dict[str, int]:
        """The longest list of each list field of the introspection types, in ``schema``."""
        if self._introspection is None or self._introspection[0] is not schema:
            self._introspection = (schema, _introspection_sizes(schema))
        return self._introspection[1]


@dataclasses.dataclass(slots=True)
class _Walk:
    """One cost computation: fragments are counted once per page size they appear under."""

    model: QueryCost
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: dict[str, Any] | None
    fragment_costs: dict[tuple[str, int | None], int] = dataclasses.field(default_factory=dict)

    def selections(
        self, parent: GraphQLNamedType | None, selection_set: SelectionSetNode, size: int | None
    ) -> int:
        """The cost of a selection set on ``parent``, whose list fields hold ``size`` items
        (None: not inside a connection or payload that says)."""
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.selection_set is not None:
                    total += self.field(parent, selection, size)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                on = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selections(on, selection.selection_set, size)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value, size)
            if total >= SATURATED:
                return SATURATED
        return total

    def fragment(self, name: str, size: int | None) -> int:
        key = (name, size)
        cost = self.fragment_costs.get(key)
        if cost is None:
            definition = self.fragments.get(name)
            if definition is None:  # validation refuses it first
                return 0
            self.fragment_costs[key] = SATURATED  # a cycle (validation refuses it first)
            on = self.schema.get_type(definition.type_condition.name.value)
            cost = self.fragment_costs[key] = self.selections(on, definition.selection_set, size)
        return cost

    def field(self, parent: GraphQLNamedType | None, node: FieldNode, size: int | None) -> int:
        assert node.selection_set is not None
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 1  # validation refuses it first
        name = node.name.value
        definition = self.schema.get_field(parent, name)
        if definition is None:  # validation refuses it first
            return 1
        count = 1
        if isinstance(get_nullable_type(definition.type), GraphQLList):
            count = size if size is not None else self.list_size(parent, name)
        items = self.items(parent, definition, node)
        inner = self.selections(get_named_type(definition.type), node.selection_set, items)
        return min(count * (1 + inner), SATURATED)

    def list_size(self, parent: GraphQLNamedType, name: str) -> int:
        """How long a list field outside connections and payloads can be."""
        if parent.name.startswith("__"):
            return self.model.introspection_sizes(self.schema).get(name, 1)
        return self.model.max_page_size

    def items(
        self, parent: GraphQLNamedType, definition: GraphQLField, node: FieldNode
    ) -> int | None:
        """How many items the list fields of ``node``'s own selection hold: the page size of a
        connection, the length of a mutation's input list; None for any other field."""
        arguments = {argument.name.value: argument.value for argument in node.arguments or ()}
        if any(name in definition.args for name in PAGE_ARGUMENTS):  # searchMemories: first
            return self.page_size(arguments)
        listed = INPUT_LISTS.get(node.name.value)
        if listed is not None and parent is self.schema.mutation_type:
            return self.input_length(arguments.get("input"), listed)
        return None

    def page_size(self, arguments: Mapping[str, ValueNode]) -> int:
        model = self.model
        sizes = [self.integer(arguments.get(name)) for name in PAGE_ARGUMENTS]
        given = [size for size in sizes if size is not None]
        if not given:
            return model.default_page_size
        return min(max(max(given), 0), model.max_page_size)

    def integer(self, value: ValueNode | None) -> int | None:
        """The integer an argument gives (the largest page for a variable while the variables
        are unknown); None when it gives none."""
        if value is None:
            return None
        if isinstance(value, VariableNode) and self.variables is None:
            return self.model.max_page_size
        given = value_from_ast_untyped(value, self.variables)
        return given if isinstance(given, int) else None

    def input_length(self, value: ValueNode | None, listed: str) -> int:
        largest = self.model.max_input_list
        if self.variables is None:
            if isinstance(value, ObjectValueNode):
                for field in value.fields:
                    if field.name.value == listed and isinstance(field.value, ListValueNode):
                        return min(len(field.value.values), largest)
            return largest
        given = value_from_ast_untyped(value, self.variables) if value is not None else None
        items = given.get(listed) if isinstance(given, dict) else None
        return min(len(items), largest) if isinstance(items, list) else largest


def _introspection_sizes(schema: GraphQLSchema) -> dict[str, int]:
    types = list(schema.type_map.values())
    with_fields = [t for t in types if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)]
    fields = [field for t in with_fields for field in t.fields.values()]
    abstract = [t for t in types if isinstance(t, GraphQLInterfaceType | GraphQLUnionType)]
    return {
        "types": len(types),
        "directives": len(schema.directives),
        "fields": max((len(t.fields) for t in with_fields), default=0),
        "interfaces": max((len(t.interfaces) for t in with_fields), default=0),
        "possibleTypes": max((len(schema.get_possible_types(t)) for t in abstract), default=0),
        "enumValues": max(
            (len(t.values) for t in types if isinstance(t, GraphQLEnumType)), default=0
        ),
        "inputFields": max(
            (len(t.fields) for t in types if isinstance(t, GraphQLInputObjectType)), default=0
        ),
        "args": max([len(f.args) for f in fields] + [len(d.args) for d in schema.directives]),
    }


class CostLimited(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor refusing, before anything runs, an operation that costs more than
    :attr:`query_cost` allows; its errors about variable values are :class:`VariablesInvalid`."""

    query_cost: ClassVar[QueryCost]

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> list[GraphQLError] | Executor[Any]:
        built = super().build(*args, **kwargs)
        if isinstance(built, list):  # the operation exists (checked before): its variables
            return [*marked(built, VariablesInvalid)]
        return built

    def execute_operation(
        self, serially: bool | None = None
    ) -> AwaitableOrValue[ExecutionResult | ExperimentalIncrementalExecutionResults]:
        request = getattr(self.context_value, "request", None)
        if request is not None:  # what ran: the request's metrics and access log name it
            operation = self.operation
            name = operation.name.value if operation.name else None
            request.state.operation = (name, operation.operation.value)
        refusal = self.query_cost.refusal(
            self.schema, self.operation, self.fragment_definitions, self.variable_values.coerced
        )
        if refusal is not None:
            return ExecutionResult(data=None, errors=[refusal])
        return super().execute_operation(serially)


def cost_limited(
    cost: QueryCost, *shortcuts: type[StrawberryGraphQLCoreExecutionContext]
) -> type[CostLimited]:
    """A :class:`CostLimited` executor for ``cost``, over the fast path's ``shortcuts`` (none:
    over Strawberry's own)."""
    return type("CostLimitedExecutor", (CostLimited, *shortcuts), {"query_cost": cost})
