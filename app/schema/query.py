"""Query root: lookups, top-level connections and ``node``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from graphql import FieldNode, value_from_ast_untyped

from memvault.db import memories as memory_repo
from memvault.db import sessions as session_repo
from memvault.db import users as user_repo
from memvault.errors import BadUserInput
from memvault.schema._upstream import raw_info
from memvault.schema.connection import (
    Connection,
    NodeT,
    PageArgs,
    Plan,
    RowT,
    connection,
    connection_field,
    page_plan,
)
from memvault.schema.context import Info
from memvault.schema.fastpath.lookahead import memory_fields, session_fields
from memvault.schema.inputs import (
    SessionFilter,
    SessionIdArgument,
    UserFilter,
    UserIdArgument,
    UuidArgument,
)
from memvault.schema.search import MemorySearchConnection, search_connection
from memvault.schema.types import (
    AfterArgument,
    FirstArgument,
    Memory,
    Node,
    SearchFilterArgument,
    SearchQueryArgument,
    Session,
    User,
    datetime_to_ms,
    from_global_id,
)
from memvault.validation import check_filter_metadata, check_id

if TYPE_CHECKING:
    from collections.abc import Callable

    from memvault.config import Settings
    from memvault.db.queries import Listing
    from memvault.schema.context import Context


def _given(value: Any) -> Any:
    return None if value is strawberry.UNSET else value


def _ms(value: Any) -> int | None:
    """A filter's time (a datetime, None or UNSET) as milliseconds, None when not given."""
    given = _given(value)
    return None if given is None else datetime_to_ms(given)


def _filter_arguments(
    filter: UserFilter | SessionFilter | None, settings: Settings
) -> dict[str, Any]:
    """What users and sessions are filtered by alike (metadata, creation times), checked, as
    arguments of the repository's filter."""
    if filter is None:
        return {}
    metadata = _given(filter.metadata)
    if metadata is not None:
        check_filter_metadata(metadata, settings=settings)
    return {
        "metadata": metadata,
        "created_after_ms": _ms(filter.created_after),
        "created_before_ms": _ms(filter.created_before),
    }


def listing_connection(
    ctx: Context,
    page: PageArgs,
    *,
    kind: str,
    listing: Listing[RowT],
    to_node: Callable[[RowT], NodeT],
) -> Connection[NodeT]:
    """The ``page`` of a connection over a whole collection: the documents of ``listing``."""
    db = ctx.db
    return connection(
        ctx.settings,
        page,
        kind=kind,
        base=listing.keys,
        fetch=lambda window: listing.rows(db, window),
        count=lambda: listing.count(db),
        to_node=to_node,
    )


def recent_window_plan(info: Info, memories: list[FieldNode]) -> Plan | None:
    """When the only connection under this field is one plain ``memories(...)`` selection (of
    ``memories``, its field nodes), its plan, so the session and that window can be read in one
    command. None otherwise (fragments, aliases of it twice, bad arguments: the ordinary path
    handles and reports those)."""
    raw = raw_info(info)
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
        return page_plan(info.context.settings, args, kind="memories")
    except (BadUserInput, TypeError):
        return None


def selected_memories(info: Info) -> list[FieldNode]:
    """The ``memories`` field nodes right under this field (what ``Session.memories`` gets)."""
    return [
        selection
        for node in raw_info(info).field_nodes
        for selection in (node.selection_set.selections if node.selection_set else ())
        if isinstance(selection, FieldNode) and selection.name.value == "memories"
    ]


def _optional_int(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(value)


@strawberry.type(
    description=(
        "Reads. Soft-deleted users, sessions and memories are invisible to every field; an"
        " invalid argument is BAD_USER_INPUT."
    )
)
class Query:
    @strawberry.field(description="Any object by its global id; null when missing or deleted.")
    async def node(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID, strawberry.argument(description="A global id, from an object's id.")
        ],
    ) -> Node | None:
        type_name, key = from_global_id(id)
        loaders = info.context.loaders
        if type_name == "User":
            user = await loaders.user.load(key)
            return User.from_doc(user) if user else None
        if type_name == "Session":
            session = await loaders.session.load(key)
            return Session.from_doc(session) if session else None
        memory = await loaders.memory.load(key)
        return Memory.from_doc(memory) if memory else None

    @strawberry.field(description="A live user by id; null when missing or deleted.")
    async def user(self, info: Info, user_id: UserIdArgument) -> User | None:
        check_id(user_id, field="userId", settings=info.context.settings)
        doc = await info.context.loaders.user.load(user_id)
        return User.from_doc(doc) if doc else None

    @connection_field("Live users, oldest first (by creation time, then id).")
    def users(
        self,
        info: Info,
        page: PageArgs,
        filter: Annotated[
            UserFilter | None, strawberry.argument(description="Only the users that match.")
        ] = None,
    ) -> Connection[User]:
        given = _filter_arguments(filter, info.context.settings)
        listing = user_repo.user_filter(project_id=info.context.project_id, **given)
        return listing_connection(
            info.context, page, kind="users", listing=listing, to_node=User.from_doc
        )

    @strawberry.field(description="A live session by id; null when missing or deleted.")
    async def session(self, info: Info, session_id: SessionIdArgument) -> Session | None:
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

    @connection_field("Live sessions, oldest first (by creation time, then id).")
    def sessions(
        self,
        info: Info,
        page: PageArgs,
        filter: Annotated[
            SessionFilter | None, strawberry.argument(description="Only the sessions that match.")
        ] = None,
    ) -> Connection[Session]:
        ctx = info.context
        given = _filter_arguments(filter, ctx.settings)  # (metadata checked before userId)
        user_id = _given(filter.user_id) if filter else None
        if user_id is not None:
            check_id(user_id, field="filter.userId", settings=ctx.settings)
        listing = session_repo.session_filter(
            project_id=ctx.project_id, user_id=user_id, fields=session_fields(info), **given
        )
        return listing_connection(
            ctx, page, kind="sessions", listing=listing, to_node=Session.from_doc
        )

    @strawberry.field(description="A live memory by uuid; null when missing or deleted.")
    async def memory(self, info: Info, uuid: UuidArgument) -> Memory | None:
        check_id(uuid, field="uuid", settings=info.context.settings)
        doc = await info.context.loaders.memory.load(uuid)
        return Memory.from_doc(doc) if doc else None

    @strawberry.field(
        description=(
            "Live memories of the project matching a text query, best first (ties: newest"
            " first). Memories of deleted sessions never appear."
        )
    )
    async def search_memories(
        self,
        info: Info,
        query: SearchQueryArgument,
        filter: SearchFilterArgument = None,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> MemorySearchConnection:
        return await search_connection(
            info.context, query=query, filter=filter, first=first, after=after
        )
