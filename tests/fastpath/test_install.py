"""The fast path installs itself only where it answers as plain Strawberry would.

A schema using a feature the shortcuts bypass (Strawberry ``exception_handlers``, a custom
``default_resolver``, field extensions, middleware, an execution context of its own) runs as plain
Strawberry, says why in one WARNING line, and answers every request as the fast path does, the
feature included. ``MEMVAULT_FAST_PATH=off`` turns every shortcut off and keeps every limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio
import strawberry
from pymongo import monitoring
from strawberry.extensions import FieldExtension, SchemaExtension
from strawberry.schema.config import StrawberryConfig

from memvault.db.memories import CHAT_FIELDS, MEMORY_PROJECTION
from memvault.http.endpoint import GraphQLEndpoint
from memvault.main import create_app
from memvault.schema import build_schema
from memvault.schema._upstream import graphql_schema
from memvault.schema.cost import QueryCost, cost_limited
from memvault.schema.fastpath.executor import PLAIN_LEAF, Executor
from memvault.schema.query import Query
from memvault.schema.types import SCALARS
from tests.support.asgi import running
from tests.support.commands import listened_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from pymongo import AsyncMongoClient
    from starlette.applications import Starlette

    from memvault.config import Settings
    from memvault.schema import MemvaultSchema

JSON = {"content-type": "application/json"}
WINDOW = """query($id: String!) { session(sessionId: $id) { sessionId memoryCount
    memories(last: 2) { nodes { uuid role content createdAt metadata } } } }"""
NESTED = """{ users(first: 5) { nodes { userId sessions(first: 5) { nodes { sessionId
    memories(first: 5) { nodes { content roleType tokenCount } } } } } } }"""
ADD = """mutation($input: AddMemoriesInput!) { addMemories(input: $input) {
    session { sessionId memoryCount } memories { uuid seq content } } }"""
SEED = {
    "sessionId": "s-1",
    "userId": "u-1",
    "memories": [
        {"uuid": f"m-{n}", "roleType": "USER", "role": "alice", "content": f"hello {n}"}
        for n in range(3)
    ],
}


def deep(levels: int) -> str:
    return "{ " + 'session(sessionId: "s") { user { ' * levels + "userId" + " } }" * levels + " }"


# (name, JSON body, the code of its first error or None)
REQUESTS: list[tuple[str, dict[str, Any], str | None]] = [
    ("typename", {"query": "{ __typename }"}, None),
    ("window", {"query": WINDOW, "variables": {"id": "s-1"}}, None),
    ("nested", {"query": NESTED}, None),
    ("idempotent mutation", {"query": ADD, "variables": {"input": SEED}}, None),
    ("missing session", {"query": WINDOW, "variables": {"id": "nope"}}, None),
    ("bad argument", {"query": '{ session(sessionId: "") { sessionId } }'}, "BAD_USER_INPUT"),
    ("bad variable", {"query": WINDOW, "variables": {"id": 5}}, "BAD_USER_INPUT"),
    ("unused variable", {"query": "query($x: Int) { __typename }"}, "GRAPHQL_VALIDATION_FAILED"),
    ("unknown field", {"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED"),
    ("two operations", {"query": "query A { __typename } query B { __typename }"},
     "GRAPHQL_VALIDATION_FAILED"),
    ("syntax error", {"query": "{ users("}, "GRAPHQL_PARSE_FAILED"),
    ("too many tokens", {"query": "{ " + "__typename " * 5000 + "}"}, "GRAPHQL_PARSE_FAILED"),
    ("too many bytes", {"query": "{ __typename }" + "#" * 70_000}, "GRAPHQL_PARSE_FAILED"),
    ("too deep", {"query": deep(6)}, "GRAPHQL_VALIDATION_FAILED"),
    ("too many aliases", {"query": "{ " + " ".join(f"a{n}: __typename" for n in range(21)) + " }"},
     "GRAPHQL_VALIDATION_FAILED"),
    ("too costly", {"query": """{ sessions(first: 100) { nodes { memories(first: 100) { nodes {
        session { memories(first: 100) { nodes { seq } } } } } } } }"""}, "QUERY_TOO_COMPLEX"),
]  # fmt: skip


class Upper(FieldExtension):
    def resolve(self, next_: Callable[..., Any], source: Any, info: Any, **kwargs: Any) -> Any:
        return next_(source, info, **kwargs).upper()


@strawberry.type(name="Query")
class Extended(Query):
    @strawberry.field(extensions=[Upper()])
    def shout(self) -> str:
        return "hi"


@strawberry.type
class Refusal:
    reason: str


class Handler(strawberry.ExceptionHandler[LookupError, Refusal]):
    def handle(self, exception: LookupError, *, field: Any, info: Any) -> Refusal:
        return Refusal(reason=str(exception))


SEEN: list[str] = []
"""What the middleware and the default resolver below were asked for."""


class Seen(SchemaExtension):
    def resolve(
        self, _next: Callable[..., Any], root: Any, info: Any, *args: Any, **kwargs: Any
    ) -> Any:
        SEEN.append(info.field_name)
        return _next(root, info, *args, **kwargs)


def default_resolver(source: Any, name: str) -> Any:
    SEEN.append(name)
    return getattr(source, name)


def own_executor(settings: Settings) -> type:
    class Own(cost_limited(QueryCost(settings))):  # type: ignore[misc]
        pass

    return Own


# feature -> (Strawberry options using it, the reason the fast path gives)
FEATURES: dict[str, tuple[Callable[[Settings], dict[str, Any]], str]] = {
    "exception_handlers": (lambda _: {"exception_handlers": [Handler()]}, "exception_handlers"),
    "default_resolver": (
        lambda _: {
            "config": StrawberryConfig(
                scalar_map=SCALARS,
                disable_field_suggestions=True,
                default_resolver=default_resolver,
            )
        },
        "a custom default_resolver",
    ),
    "field extensions": (lambda _: {"query": Extended}, "field extensions (Query.shout)"),
    "middleware": (lambda _: {"extensions": [Seen]}, "schema extensions (Seen)"),
    "execution context": (
        lambda settings: {"execution_context_class": own_executor(settings)},
        "its own execution_context_class (Own)",
    ),
}


def fast(settings: Settings) -> Settings:
    return dataclasses.replace(settings, fast_path=True)


def endpoint_of(app: Starlette) -> GraphQLEndpoint:
    route = next(route for route in app.routes if getattr(route, "path", "") == "/graphql")
    endpoint = route.endpoint  # type: ignore[attr-defined]
    assert isinstance(endpoint, GraphQLEndpoint)
    return endpoint


def assert_plain(schema: MemvaultSchema) -> None:
    """No shortcut anywhere: no document store, Strawberry's executor, its resolvers."""
    assert not schema.fast_path
    assert schema.documents is None
    assert not issubclass(schema.execution_context_class, Executor)
    for named_type in graphql_schema(schema).type_map.values():
        for field in getattr(named_type, "fields", {}).values():
            assert PLAIN_LEAF not in (getattr(field, "extensions", None) or {})


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_a_bypassed_feature_refuses_the_fast_path(
    feature: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    options, reason = FEATURES[feature]
    with caplog.at_level(logging.INFO, logger="memvault.graphql"):
        built = build_schema(fast(settings), **options(settings))
    assert_plain(built)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"fast path refused: the schema uses {reason}; it runs as plain Strawberry"]


def test_the_served_schema_takes_the_fast_path(settings: Settings) -> None:
    built = build_schema(fast(settings))
    assert built.fast_path
    assert built.documents is not None
    assert issubclass(built.execution_context_class, Executor)


def test_fast_path_off_takes_no_shortcut(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="memvault.graphql"):
        built = build_schema(dataclasses.replace(settings, fast_path=False))
    assert_plain(built)
    assert [r.getMessage() for r in caplog.records] == [
        "fast path off (MEMVAULT_FAST_PATH): the schema runs as plain Strawberry"
    ]


@pytest_asyncio.fixture(loop_scope="session")
async def serve(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[Callable[[Callable[[], MemvaultSchema] | None], Any]]:
    """Serves an app with the schema ``build`` makes in its view (None: as built), on one
    database; ``(await serve(build))(body)`` posts ``body`` and gives the answer, request ids
    blanked."""
    async with contextlib.AsyncExitStack() as stack:

        async def serve_schema(
            build: Callable[[], MemvaultSchema] | None,
        ) -> Callable[[dict[str, Any]], Any]:
            app = create_app(fast(settings), client=mongo_client)
            if build is not None:  # after the app's: Strawberry sets the default resolver on
                endpoint_of(app).view.schema = build()  # the (shared) fields of the last schema
            served = await stack.enter_async_context(running(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=served), base_url="http://memvault.test"
            )
            stack.push_async_callback(client.aclose)

            async def post(payload: dict[str, Any]) -> tuple[int, str]:
                response = await client.post("/graphql", content=json.dumps(payload), headers=JSON)
                text = re.sub(r'"requestId":"[0-9a-f]+"', '"requestId":"-"', response.text)
                return response.status_code, text

            return post

        yield serve_schema


async def answers(post: Callable[[dict[str, Any]], Any]) -> dict[str, tuple[int, str]]:
    created = await post({"query": 'mutation { createUser(input: {userId: "u-1"}) { userId } }'})
    assert '"errors"' not in created[1] or "ALREADY_EXISTS" in created[1]
    await post({"query": ADD, "variables": {"input": SEED}})
    return {name: await post(body) for name, body, _ in REQUESTS}


@pytest.mark.parametrize("feature", sorted(FEATURES))
async def test_a_refused_schema_answers_as_the_fast_path(
    feature: str, settings: Settings, serve: Any
) -> None:
    options, _ = FEATURES[feature]
    expected = await answers(await serve(None))
    SEEN.clear()
    post = await serve(lambda: build_schema(fast(settings), **options(settings)))
    assert await answers(post) == expected
    if feature == "middleware":  # it saw every field, the plain leaves included
        assert {"content", "roleType", "tokenCount", "userId"} <= set(SEEN)
    if feature == "default_resolver":  # it read every attribute field
        assert {"content", "role_type", "token_count", "user_id"} <= set(SEEN)
    if feature == "field extensions":
        assert await post({"query": "{ shout }"}) == (200, '{"data":{"shout":"HI"}}')


@pytest.mark.parametrize(("name", "payload", "code"), REQUESTS, ids=[r[0] for r in REQUESTS])
async def test_fast_path_off_keeps_every_limit_and_answer(
    name: str, payload: dict[str, Any], code: str | None, settings: Settings, serve: Any
) -> None:
    fast_post = await serve(None)
    off_post = await serve(lambda: build_schema(dataclasses.replace(settings, fast_path=False)))
    await answers(fast_post)
    fast_answer, off_answer = await fast_post(payload), await off_post(payload)
    assert off_answer == fast_answer
    errors = json.loads(off_answer[1]).get("errors")
    assert (errors[0]["extensions"]["code"] if errors else None) == code


class MemoryProjections(monitoring.CommandListener):
    """The projections of every read of the memories collection (directly or in a pipeline)."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name == "find" and command.get("find") == "memories":
            self.seen.append(set(command.get("projection") or {}))
        if event.command_name == "aggregate":
            self._stages(command["pipeline"])

    def _stages(self, pipeline: list[dict[str, Any]]) -> None:
        for stage in pipeline:
            union = stage.get("$unionWith")
            if union and union["coll"] == "memories":
                self.seen += [set(s["$project"]) for s in union["pipeline"] if "$project" in s]
                self._stages(union["pipeline"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("fast_path", [True, False], ids=["on", "off"])
async def test_lookahead_projects_only_with_the_fast_path(
    fast_path: bool, mongo_uri: str, settings: Settings
) -> None:
    reads = MemoryProjections()
    chosen = dataclasses.replace(settings, fast_path=fast_path)
    async with listened_app(mongo_uri, chosen, reads) as gql:
        await gql.ok(ADD, {"input": {**SEED, "userId": None}})
        reads.seen.clear()
        await gql.ok("""{ sessions(first: 5) { nodes { memories(last: 2) { nodes { content }
            } } } }""")
    assert reads.seen
    expected = set(CHAT_FIELDS) if fast_path else set(MEMORY_PROJECTION)
    assert all(projection == expected for projection in reads.seen), reads.seen
