"""Every type, field, argument, input field and enum value of the schema has a description, so a
frontend developer can work from GraphiQL's docs alone."""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
)

from memvault.schema import schema

BUILT_IN_SCALARS = {"String", "Int", "Float", "Boolean", "ID"}


def _ours() -> list[GraphQLNamedType]:
    types = schema._schema.type_map.values()
    return [t for t in types if not t.name.startswith("__") and t.name not in BUILT_IN_SCALARS]


def undescribed() -> list[str]:
    """The schema coordinates (``Type.field(arg:)``) without a description."""
    missing: list[str] = []

    def check(coordinate: str, description: str | None) -> None:
        if not (description or "").strip():
            missing.append(coordinate)

    for named in _ours():
        check(named.name, named.description)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            for name, field in named.fields.items():
                check(f"{named.name}.{name}", field.description)
                for arg_name, arg in field.args.items():
                    check(f"{named.name}.{name}({arg_name}:)", arg.description)
        elif isinstance(named, GraphQLInputObjectType):
            for name, input_field in named.fields.items():
                check(f"{named.name}.{name}", input_field.description)
        elif isinstance(named, GraphQLEnumType):
            for name, value in named.values.items():
                check(f"{named.name}.{name}", value.description)
        else:
            assert isinstance(named, GraphQLScalarType), named
    return missing


def test_every_schema_element_is_described() -> None:
    assert undescribed() == []


def test_the_walk_sees_every_kind_of_element() -> None:
    """The walk above covers objects, inputs, enums, interfaces and scalars (a check that finds
    nothing because it looks at nothing would pass too)."""
    kinds = (
        GraphQLObjectType,
        GraphQLInputObjectType,
        GraphQLEnumType,
        GraphQLInterfaceType,
        GraphQLScalarType,
    )
    for kind in kinds:
        assert any(isinstance(t, kind) for t in _ours()), kind
