"""Shortcuts through graphql-core's executor and Strawberry's resolver wrapper.

graphql-core spends most of a large response on bookkeeping for fields that only read an
attribute: a path, a resolve-info object, argument coercion and the type dispatch of
``complete_value``, for every field of every item. A *plain leaf* is a field whose value is an
attribute of its parent (or a synchronous function of the parent alone), of a scalar or enum type,
with no arguments, extensions or permissions. For those the executor reads and serialises the value
directly, and a list of objects whose selected fields are all plain leaves is built in one loop.

Anything unusual (a null in a non-null field, a value the scalar refuses, a getter that raises, an
item of the wrong type) takes graphql-core's own path for that field or list, so errors, their
paths and null propagation are exactly graphql-core's. The shortcut is off when a schema extension
resolves fields (middleware), since that must see every field.

*Lean resolvers*: Strawberry wraps every resolver in a function that converts each argument through
its type machinery and builds the call. For a resolver whose arguments are all built-in scalars
(which graphql-core has already coerced, so conversion is the identity) and that has no
extensions or permissions, :func:`optimise` installs a direct call instead, with the same
arguments, ``info``, ``self`` and ``root`` as Strawberry would pass.
"""

from __future__ import annotations

import inspect
import operator
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLObjectType,
    GraphQLResolveInfoHelpers,
    GraphQLScalarType,
    Undefined,
    get_nullable_type,
    is_non_null_type,
    is_object_type,
)

from memvault.schema._upstream import (
    DEFINITION_BACKREF,
    StrawberryField,
    StrawberryGraphQLCoreExecutionContext,
    StrawberryOptional,
    graphql_schema,
    make_info,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from graphql import (
        GraphQLField,
        GraphQLFieldResolver,
        GraphQLList,
        GraphQLOutputType,
        GraphQLResolveInfo,
    )
    from strawberry.schema.config import StrawberryConfig

    from memvault.schema._upstream import (
        AwaitableOrValue,
        FieldDetailsList,
        GroupedFieldSet,
        Path,
    )

PLAIN_LEAF = "memvault.plain-leaf"
"""Key of a field's ``extensions`` holding its :class:`PlainLeaf`."""

SERIALISED = "memvault.serialised"
"""Key of a Strawberry field's ``metadata``: a function of the parent returning the field's
serialised value in one step, exactly what its resolver then its scalar's ``serialize`` return
(a timestamp's text from its milliseconds, without a ``datetime`` in between)."""

P = ParamSpec("P")
R = TypeVar("R")

MISS = object()
"""What a shortcut returns when graphql-core must handle the value itself."""


@dataclass(frozen=True, slots=True)
class PlainLeaf:
    """How to read and serialise one plain leaf field."""

    get: Callable[[Any], Any]
    coerce: Callable[[Any], Any]
    non_null: bool

    def complete(self, source: Any) -> Any:
        """The serialised value, or ``MISS`` when graphql-core must produce it (or its error)."""
        try:
            value = self.get(source)
        except Exception:
            return MISS
        if value is None:
            return MISS if self.non_null else None
        try:
            coerced = self.coerce(value)
        except Exception:
            return MISS
        return MISS if coerced is None or coerced is Undefined else coerced


@dataclass(frozen=True, slots=True)
class TypeName:
    """``__typename`` of an object type: a constant."""

    name: str

    def complete(self, source: Any) -> Any:
        return self.name


def plain_getter(field: StrawberryField) -> Callable[[Any], Any] | None:
    """How to read ``field`` from its parent, when that needs nothing but the parent."""
    if field.extensions or field.permission_classes or field.is_async:
        return None
    resolver = field.base_resolver
    if resolver is None:
        return operator.attrgetter(field.python_name)
    if resolver.arguments or resolver.info_parameter is not None:
        return None
    parent = resolver.root_parameter or resolver.self_parameter
    func = cast("Callable[[Any], Any]", resolver.wrapped_func)
    if parent is None or list(inspect.signature(func).parameters) != [parent.name]:
        return None
    return func


def optimise(schema: strawberry.Schema) -> tuple[int, int]:
    """Mark the plain leaves of ``schema`` and install lean resolvers; how many of each."""
    leaves = lean = 0
    for named_type in graphql_schema(schema).type_map.values():
        if not isinstance(named_type, GraphQLObjectType) or named_type.name.startswith("__"):
            continue
        for graphql_field in named_type.fields.values():
            field = graphql_field.extensions.get(DEFINITION_BACKREF)
            if type(field) is not StrawberryField:  # subclasses may resolve differently
                continue
            if field.is_subscription:  # its resolver makes the stream; events resolve as is
                continue
            leaf = _plain_leaf(graphql_field, field)
            if leaf is not None:
                graphql_field.extensions[PLAIN_LEAF] = leaf
                leaves += 1
                continue
            resolve = lean_resolver(field, schema.config)
            if resolve is not None:
                graphql_field.resolve = resolve
                lean += 1
    return leaves, lean


def lean_resolver(field: StrawberryField, config: StrawberryConfig) -> GraphQLFieldResolver | None:
    """A direct call of ``field``'s resolver, when Strawberry's wrapper would add nothing."""
    resolver = field.base_resolver
    if resolver is None or field.extensions or field.permission_classes:
        return None
    if resolver.parent_parameter is not None:
        return None
    if not all(_is_builtin_scalar(argument.type) for argument in field.arguments):
        return None
    names = [
        (config.name_converter.from_argument(argument), argument.python_name)
        for argument in field.arguments
    ]
    func = cast("Callable[..., Any]", resolver.wrapped_func)
    pass_self = resolver.self_parameter is not None
    root_name = resolver.root_parameter.name if resolver.root_parameter else None
    info_name = resolver.info_parameter.name if resolver.info_parameter else None
    info_class = config.info_class

    def resolve(source: Any, info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
        kwargs = {python: arguments[graphql] for graphql, python in names if graphql in arguments}
        if root_name is not None:
            kwargs[root_name] = source
        if info_name is not None:
            kwargs[info_name] = make_info(info_class, info, field)
        return func(source, **kwargs) if pass_self else func(**kwargs)

    return resolve


BUILTIN_SCALARS: tuple[object, ...] = (int, float, str, bool, strawberry.ID)


def _is_builtin_scalar(annotation: object) -> bool:
    if isinstance(annotation, StrawberryOptional):
        annotation = annotation.of_type
    return any(annotation is scalar for scalar in BUILTIN_SCALARS)


def _plain_leaf(graphql_field: GraphQLField, field: StrawberryField) -> PlainLeaf | None:
    if graphql_field.args:
        return None
    non_null = is_non_null_type(graphql_field.type)
    named = get_nullable_type(graphql_field.type)
    if not isinstance(named, GraphQLScalarType | GraphQLEnumType):
        return None
    getter = plain_getter(field)
    if getter is None:
        return None
    serialised = field.metadata.get(SERIALISED) if field.metadata else None
    if serialised is not None:
        return PlainLeaf(get=serialised, coerce=_as_is, non_null=non_null)
    return PlainLeaf(get=getter, coerce=named.coerce_output_value, non_null=non_null)


def _as_is(value: Any) -> Any:
    return value


Shortcut = PlainLeaf | TypeName


def _weakly(method: Callable[P, R]) -> Callable[P, R]:
    """``method``, without keeping its object alive."""
    ref, name = weakref.WeakMethod(method), method.__qualname__

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = ref()
        if bound is None:
            raise ReferenceError(f"{name}: its object is gone")
        return bound(*args, **kwargs)

    return call


class Executor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, completing plain leaves without graphql-core's per-field work."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # graphql-core's helpers hold bound methods of the executor: a reference cycle that kept
        # every request's objects (context, loaders, documents, about 180 of them for a window)
        # alive until the next garbage collection, whose cost then grew with them.
        self.async_helpers = GraphQLResolveInfoHelpers(
            gather=_weakly(self.gather_async_work), track=_weakly(self.track_async_work)
        )
        middleware = self.middleware_manager
        self._shortcuts_on = middleware is None or not middleware.middlewares
        # Per grouped field set (kept alive with it): the shortcut of each field, or None.
        self._list_plans: dict[int, tuple[GroupedFieldSet, list[tuple[str, Shortcut]] | None]] = {}

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        if self._shortcuts_on:
            field_def = parent_type.fields.get(field_details_list[0].node.name.value)
            if field_def is not None:
                leaf: PlainLeaf | None = field_def.extensions.get(PLAIN_LEAF)
                if leaf is not None:
                    value = leaf.complete(source)
                    if value is not MISS:
                        return value
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        if self._shortcuts_on and isinstance(result, list):
            completed = self._complete_plain_list(
                return_type.of_type, field_details_list, info, result
            )
            if completed is not None:
                return completed
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _complete_plain_list(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        items: list[Any],
    ) -> list[Any] | None:
        """The list completed in one loop, or None when graphql-core must complete it."""
        non_null = is_non_null_type(item_type)
        object_type = get_nullable_type(item_type)
        if not is_object_type(object_type):
            return None
        plan = self._plain_plan(object_type, field_details_list)
        if plan is None:
            return None
        is_type_of = object_type.is_type_of
        completed: list[Any] = []
        append = completed.append
        for item in items:
            if item is None:
                if non_null:
                    return None
                append(None)
                continue
            if is_type_of is not None and is_type_of(item, info) is not True:
                return None
            data = {}
            for response_name, shortcut in plan:
                value = shortcut.complete(item)
                if value is MISS:
                    return None
                data[response_name] = value
            append(data)
        return completed

    def _plain_plan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> list[tuple[str, Shortcut]] | None:
        """Each selected field's shortcut, when every selected field of the items has one."""
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages:
            return None
        cached = self._list_plans.get(id(grouped_field_set))
        if cached is not None:
            return cached[1]
        plan: list[tuple[str, Shortcut]] | None = []
        for response_name, details in grouped_field_set.items():
            name = details[0].node.name.value
            shortcut: Shortcut | None
            if name == "__typename":
                shortcut = TypeName(object_type.name)
            else:
                field_def = object_type.fields.get(name)
                shortcut = field_def.extensions.get(PLAIN_LEAF) if field_def else None
            if shortcut is None:
                plan = None
                break
            plan.append((response_name, shortcut))  # type: ignore[union-attr]
        self._list_plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan
