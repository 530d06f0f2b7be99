"""Query root: lookups, top-level connections and ``node``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import strawberry
from graphql import FieldNode, value_from_ast_untyped

from memvault.db import memories as memory_repo
from memvault.db import sessions as session_repo
from memvault.db import users as user_repo
from memvault.db.documents import Doc, Window
from memvault.errors import BadUserInput
from memvault.schema.connection import Connection, PageArgs, PageSource, Plan, plan_page
from memvault.schema.context import Info
from memvault.schema.inputs import SessionFilter, UserFilter
from memvault.schema.lookahead import memory_fields
from memvault.schema.types import (
    Memory,
    Node,
    Session,
    User,
    datetime_to_ms,
    from_global_id,
    memories_plan,
)
from memvault.validation import check_filter_metadata, check_id

if TYPE_CHECKING:
    from datetime import datetime

    from memvault.schema.context import Context


def _given(value: Any) -> Any:
    return None if value is strawberry.UNSET else value


# order_key starts with 13 digits: creation times up to 2286-11-20. A filter time past that is
# the last of them, not a 14-digit key that would sort below every stored one.
LAST_KEY_MS = 10**13 - 1


def created_window(created_after: datetime | None, created_before: datetime | None) -> Window:
    """The ``order_key`` range of items created strictly after / strictly before the given times."""
    gte = f"{min(datetime_to_ms(created_after) + 1, LAST_KEY_MS):013d}" if created_after else None
    lt = f"{min(datetime_to_ms(created_before), LAST_KEY_MS):013d}" if created_before else None
    return Window(gte=gte, lt=lt)


def top_level_connection(
    ctx: Context,
    *,
    args: PageArgs,
    kind: str,
    base: Window,
    match: Doc,
    node_type: type[User] | type[Session],
) -> Any:
    """A connection over a whole collection (users or sessions), filtered by ``match``."""
    settings = ctx.settings
    plan = plan_page(
        args.check(settings),
        kind=kind,
        base=base,
        default_size=settings.default_page_size,
    )
    lister = user_repo.list_users if kind == "users" else session_repo.list_sessions
    counter = user_repo.count_users if kind == "users" else session_repo.count_sessions
    count_match = base.match(match, "order_key")

    async def fetch(window: Window) -> list[Doc]:
        return await lister(ctx.db, match=match, window=window)

    async def count() -> int:
        return await counter(ctx.db, match=count_match)

    source = PageSource(
        plan, kind=kind, key_field="order_key", fetch=fetch, to_node=node_type.from_doc, count=count
    )
    return Connection(source=source)


def recent_window_plan(info: Info, memories: list[FieldNode]) -> Plan | None:
    """When the only connection under this field is one plain ``memories(...)`` selection (of
    ``memories``, its field nodes), its plan, so the session and that window can be read in one
    command. None otherwise (fragments, aliases of it twice, bad arguments: the ordinary path
    handles and reports those)."""
    raw = info._raw_info
    if len(raw.field_nodes) != 1:
        return None
    selection_set = raw.field_nodes[0].selection_set
    selections = selection_set.selections if selection_set else ()
    if not all(isinstance(selection, FieldNode) for selection in selections):
        return None
    if len(memories) != 1:
        return None
    # Strawberry hands resolvers graphql-core's coerced variables as a plain dict
    given: Any = raw.variable_values
    variables: dict[str, Any] = getattr(given, "coerced", given)
    arguments = {
        argument.name.value: value_from_ast_untyped(argument.value, variables)
        for argument in memories[0].arguments or ()
    }
    try:
        sizes = [_optional_int(arguments.get(name)) for name in ("first", "last")]
        cursors = [arguments.get(name) for name in ("after", "before")]
        if not all(c is None or isinstance(c, str) for c in cursors):
            return None
        args = PageArgs(first=sizes[0], after=cursors[0], last=sizes[1], before=cursors[1])
        return memories_plan(info.context.settings, args)
    except (BadUserInput, TypeError):
        return None


def selected_memories(info: Info) -> list[FieldNode]:
    """The ``memories`` field nodes right under this field (what ``Session.memories`` gets)."""
    return [
        selection
        for node in info._raw_info.field_nodes
        for selection in (node.selection_set.selections if node.selection_set else ())
        if isinstance(selection, FieldNode) and selection.name.value == "memories"
    ]


def _optional_int(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(value)


@strawberry.type
class Query:
    @strawberry.field(description="Any object by its global id; null when missing or deleted.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        type_name, key = from_global_id(id)
        loaders = info.context.loaders
        if type_name == "User":
            doc = await loaders.user.load(key)
            return User.from_doc(doc) if doc else None
        if type_name == "Session":
            doc = await loaders.session.load(key)
            return Session.from_doc(doc) if doc else None
        doc = await loaders.memory.load(key)
        return Memory.from_doc(doc) if doc else None

    @strawberry.field(description="A live user by id.")
    async def user(self, info: Info, user_id: str) -> User | None:
        check_id(user_id, field="userId", settings=info.context.settings)
        doc = await info.context.loaders.user.load(user_id)
        return User.from_doc(doc) if doc else None

    @strawberry.field(description="Live users, oldest first.")
    def users(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: UserFilter | None = None,
    ) -> Connection[User]:
        ctx = info.context
        metadata = _given(filter.metadata) if filter else None
        if metadata is not None:
            check_filter_metadata(metadata, settings=ctx.settings)
        base = (
            created_window(_given(filter.created_after), _given(filter.created_before))
            if filter
            else Window()
        )
        match = user_repo.user_filter(project_id=ctx.project_id, metadata=metadata)
        return top_level_connection(  # type: ignore[no-any-return]
            ctx,
            args=PageArgs(first, after, last, before),
            kind="users",
            base=base,
            match=match,
            node_type=User,
        )

    @strawberry.field(description="A live session by id.")
    async def session(self, info: Info, session_id: str) -> Session | None:
        ctx = info.context
        check_id(session_id, field="sessionId", settings=ctx.settings)
        memories = selected_memories(info)
        plan = recent_window_plan(info, memories)
        if plan is not None:  # the hot path of a chat turn: session and its window, one command
            fields = memory_fields(info, memories)  # what Session.memories then finds cached
            doc, rows = await memory_repo.session_with_memories(
                ctx.db,
                project_id=ctx.project_id,
                session_id=session_id,
                window=plan.window,
                fields=fields,
            )
            ctx.loaders.session.prime(session_id, doc)
            if doc is not None:
                ctx.loaders.memories_of_session.prime((session_id, plan.window, fields), rows)
        else:
            doc = await ctx.loaders.session.load(session_id)
        return Session.from_doc(doc) if doc else None

    @strawberry.field(description="Live sessions, oldest first.")
    def sessions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: SessionFilter | None = None,
    ) -> Connection[Session]:
        ctx = info.context
        metadata = _given(filter.metadata) if filter else None
        if metadata is not None:
            check_filter_metadata(metadata, settings=ctx.settings)
        user_id = _given(filter.user_id) if filter else None
        if user_id is not None:
            check_id(user_id, field="filter.userId", settings=ctx.settings)
        base = (
            created_window(_given(filter.created_after), _given(filter.created_before))
            if filter
            else Window()
        )
        match = session_repo.session_filter(
            project_id=ctx.project_id, user_id=user_id, metadata=metadata
        )
        return top_level_connection(  # type: ignore[no-any-return]
            ctx,
            args=PageArgs(first, after, last, before),
            kind="sessions",
            base=base,
            match=match,
            node_type=Session,
        )

    @strawberry.field(description="A live memory by uuid.")
    async def memory(self, info: Info, uuid: str) -> Memory | None:
        check_id(uuid, field="uuid", settings=info.context.settings)
        doc = await info.context.loaders.memory.load(uuid)
        return Memory.from_doc(doc) if doc else None
