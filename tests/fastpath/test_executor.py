"""The executor shortcuts answer exactly what Strawberry and graphql-core answer without them."""

from __future__ import annotations

import random
from enum import Enum
from types import SimpleNamespace
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension

from memvault.schema import schema as memvault_schema
from memvault.schema.fastpath.executor import PLAIN_LEAF, Executor, optimise
from memvault.schema.types import ms_to_datetime, serialize_datetime, serialize_ms


@strawberry.enum
class Colour(Enum):
    RED = "red"
    BLUE = "blue"


def shout(root: Any) -> str:
    return root.name.upper()


@strawberry.interface
class Named:  # an interface gives Item an is_type_of check, as memvault's Node does
    name: str


@strawberry.type
class Item(Named):
    name: str
    count: int | None
    colour: Colour
    loud: str = strawberry.field(resolver=shout)

    @strawberry.field
    def tagged(self, prefix: str = "#", times: int | None = None) -> str:
        return prefix * (times or 1) + self.name

    @strawberry.field
    def where(self, info: strawberry.Info) -> str:
        return ".".join(str(key) for key in info.path.as_list())

    @strawberry.field
    async def later(self) -> str:
        return self.name + "!"


@strawberry.type
class Other:
    name: str


def good(name: str, count: int | None = 1) -> Item:
    return Item(name=name, count=count, colour=Colour.RED)


def broken(**changes: Any) -> Item:
    item = good("broken")
    item.__dict__.update(changes)
    return item


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return [good("a"), good("b", None), Item(name="c", count=3, colour=Colour.BLUE)]

    @strawberry.field
    def maybe_items(self) -> list[Item | None]:
        return [good("a"), None, good("c")]

    @strawberry.field
    def with_null_name(self) -> list[Item | None]:
        return [good("a"), broken(name=None), good("c")]

    @strawberry.field
    def with_null_name_strict(self) -> list[Item]:
        return [good("a"), broken(name=None)]

    @strawberry.field
    def with_bad_int(self) -> list[Item | None]:
        return [good("a"), broken(count="not a number")]

    @strawberry.field
    def with_bad_enum(self) -> list[Item | None]:
        return [good("a"), broken(colour="green")]

    @strawberry.field
    def with_wrong_type(self) -> list[Item | None]:
        return [good("a"), Other(name="x")]  # type: ignore[list-item]

    @strawberry.field
    def one(self, name: str = "solo") -> Item:
        return good(name)

    @strawberry.field
    def one_broken(self) -> Item | None:
        return broken(name=None)


QUERIES = [
    "{ items { name count colour loud } }",
    "{ items { __typename name n2: name c: count } }",
    "{ items { ...F } } fragment F on Item { name colour }",
    "{ items { ... on Item { name } loud } }",
    "query Q($skip: Boolean!) { items { name count @skip(if: $skip) colour @include(if: $skip) } }",
    "{ items { name tagged } }",
    '{ items { tagged(prefix: "@", times: 3) } }',
    "query Q($t: Int) { items { tagged(times: $t) } }",
    "{ items { name where } }",
    "{ items { name later } }",
    "{ maybeItems { name } }",
    "{ withNullName { name count } }",
    "{ withNullNameStrict { name } }",
    "{ withBadInt { name count } }",
    "{ withBadEnum { name colour } }",
    "{ withWrongType { name } }",
    '{ one(name: "x") { name loud tagged where } }',
    "{ one { name } alias: one { count } }",
    "{ oneBroken { name } }",
]
VARIABLES = {"skip": True, "t": 2}


def plain_schema() -> strawberry.Schema:
    return strawberry.Schema(query=Query)


def fast_schema(**kwargs: Any) -> strawberry.Schema:
    built = strawberry.Schema(query=Query, execution_context_class=Executor, **kwargs)
    optimise(built)
    return built


def as_comparable(result: Any) -> tuple[Any, list[tuple[str, list[Any] | None]]]:
    errors = [(error.message, error.path) for error in result.errors or []]
    return result.data, errors


@pytest.mark.parametrize("query", QUERIES)
async def test_same_answer_as_strawberry(query: str) -> None:
    expected = await plain_schema().execute(query, variable_values=VARIABLES)
    got = await fast_schema().execute(query, variable_values=VARIABLES)
    assert as_comparable(got) == as_comparable(expected)


def test_the_cases_cover_errors_and_successes() -> None:
    """The differential test above would prove little if every case failed the same way."""
    plain = plain_schema()
    outcomes = [
        plain.execute_sync(q, variable_values=VARIABLES) for q in QUERIES if "later" not in q
    ]
    assert sum(not r.errors for r in outcomes) >= 10
    assert sum(bool(r.errors) for r in outcomes) >= 5


def test_fields_are_classified() -> None:
    built = fast_schema()
    item = built._schema.type_map["Item"].fields  # type: ignore[attr-defined]
    query = built._schema.type_map["Query"].fields  # type: ignore[attr-defined]
    assert {name for name, f in item.items() if PLAIN_LEAF in f.extensions} == {
        "name", "count", "colour", "loud",
    }  # fmt: skip
    # lean resolvers replace Strawberry's wrapper: args, info, self and async alike
    for name in ("tagged", "where", "later"):
        assert item[name].resolve.__qualname__.startswith("lean_resolver")
    assert query["one"].resolve.__qualname__.startswith("lean_resolver")


def test_memvault_hot_fields_take_the_shortcuts() -> None:
    fields = memvault_schema._schema.type_map
    for leaf in ("content", "role", "roleType", "createdAt", "id", "metadata"):
        assert PLAIN_LEAF in fields["Memory"].fields[leaf].extensions  # type: ignore[attr-defined]
    for type_name, lean in (
        ("Session", "memories"),
        ("User", "sessions"),
        ("MemoryConnection", "nodes"),
    ):
        resolve = fields[type_name].fields[lean].resolve  # type: ignore[attr-defined]
        assert resolve.__qualname__.startswith("lean_resolver")


async def test_plain_lists_skip_graphql_core_per_field_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    original = Executor.__mro__[1].execute_field

    def counting(self: Any, parent_type: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(parent_type.name)
        return original(self, parent_type, *args, **kwargs)

    monkeypatch.setattr(Executor.__mro__[1], "execute_field", counting)
    result = await fast_schema().execute("{ items { name count colour loud } }")
    assert not result.errors
    assert calls == ["Query"]  # the three items and their twelve fields: one loop, no calls


class SeesEveryField(SchemaExtension):
    seen: list[str] = []

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        SeesEveryField.seen.append(info.field_name)
        return _next(root, info, *args, **kwargs)


async def test_shortcuts_stand_aside_for_resolving_extensions() -> None:
    SeesEveryField.seen = []
    result = await fast_schema(extensions=[SeesEveryField]).execute("{ items { name } }")
    assert isinstance(result.data, dict)
    assert result.data["items"] == [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    assert SeesEveryField.seen == ["items", "name", "name", "name"]


def test_serialised_timestamps_match_resolver_then_scalar() -> None:
    """createdAt/updatedAt leaves are read as text from milliseconds in one step (SERIALISED):
    the same text as the resolver's datetime through the DateTime scalar, at every edge."""
    rng = random.Random(5)
    first, last = -62_135_596_800_000, 253_402_300_799_999  # year 1 to year 9999
    edges = [first, last, -1001, -1000, -999, -1, 0, 1, 999, 1000, 951_782_400_000]
    samples = edges + [rng.randint(first, last) for _ in range(20_000)]
    for ms in samples:
        assert serialize_ms(ms) == serialize_datetime(ms_to_datetime(ms)), ms
    leaf = memvault_schema._schema.type_map["Memory"].fields["createdAt"].extensions[PLAIN_LEAF]  # type: ignore[attr-defined]
    memory = SimpleNamespace(created_ms=1_763_750_000_123)
    assert leaf.complete(memory) == "2025-11-21T18:33:20.123Z"
