"""``searchMemories``: ranked full-text search with filters and keyset pages (on Query, and
scoped on User and Session)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import strawberry

from memvault.db.search import SearchFilter, SearchPage, search_memories
from memvault.errors import BadUserInput
from memvault.schema.connection import decode_cursor, encode_cursor, max_cursor_length
from memvault.schema.types import Memory, MemorySearchFilter, datetime_to_ms
from memvault.validation import check_filter_metadata, check_id, check_search_query

if TYPE_CHECKING:
    from memvault.db.search import Hit
    from memvault.schema.context import Context

KIND = "search"


@strawberry.type(description="A search result: the memory, its score and its cursor.")
class MemorySearchEdge:
    cursor: str = strawberry.field(
        description="This result's place in the results, opaque: give it as after."
    )
    node: Memory = strawberry.field(description="The memory found.")
    score: float = strawberry.field(
        description="Relevance: higher is better; comparable only within one search."
    )


@strawberry.type(description="Whether more results follow, and where this page ends.")
class MemorySearchPageInfo:
    has_next_page: bool = strawberry.field(description="More results follow this page.")
    end_cursor: str | None = strawberry.field(description="The last result's cursor, if any.")


@strawberry.type(
    description=(
        "A page of search results, best first (ties: newest first); pages reach the best 1000"
        " matches."
    )
)
class MemorySearchConnection:
    edges: list[MemorySearchEdge] = strawberry.field(description="The results with cursors.")
    page_info: MemorySearchPageInfo = strawberry.field(description="Whether more follow.")

    @strawberry.field(description="The memories found (edges without cursors and scores).")
    def nodes(self) -> list[Memory]:
        return [edge.node for edge in self.edges]


def cursor_of(hit: Hit) -> str:
    score, created_ms, uuid = hit.key
    return encode_cursor(KIND, f"{score!r}:{created_ms}:{uuid}")


def cursor_key(cursor: str, ctx: Context) -> tuple[float, int, str]:
    if len(cursor) > max_cursor_length(ctx.settings.max_id_length) + 64:
        raise BadUserInput("after: not a valid search cursor", field="after")
    key = str(decode_cursor(cursor, kind=KIND, field="after"))
    try:
        score, created_ms, uuid = key.split(":", 2)
        return float(score), int(created_ms), uuid
    except ValueError:
        raise BadUserInput("after: not a valid search cursor", field="after") from None


def _given(value: Any) -> Any:
    return None if value is strawberry.UNSET else value


def _search_filter(
    given: MemorySearchFilter | None, ctx: Context, *, user_id: str | None, session_id: str | None
) -> SearchFilter | None:
    """The checked filter with the scope's ids; None when the scope and filter disagree."""
    if given is None:
        return SearchFilter(user_id=user_id, session_id=session_id)
    ids = {
        "userId": (_given(given.user_id), user_id),
        "sessionId": (_given(given.session_id), session_id),
    }
    chosen: dict[str, str | None] = {}
    for name, (value, scope) in ids.items():
        if value is not None:
            check_id(value, field=f"filter.{name}", settings=ctx.settings)
            if scope is not None and value != scope:
                return None
        chosen[name] = scope if scope is not None else value
    metadata = _given(given.metadata)
    if metadata is not None:
        check_filter_metadata(metadata, settings=ctx.settings)
    role = _given(given.role)
    if role is not None:
        check_id(role, field="filter.role", settings=ctx.settings)
    role_type = _given(given.role_type)
    after, before = _given(given.created_after), _given(given.created_before)
    return SearchFilter(
        user_id=chosen["userId"],
        session_id=chosen["sessionId"],
        role_type=None if role_type is None else role_type.value,
        role=role,
        created_after_ms=None if after is None else datetime_to_ms(after),
        created_before_ms=None if before is None else datetime_to_ms(before),
        metadata=metadata,
    )


async def search_connection(
    ctx: Context,
    *,
    query: str,
    filter: MemorySearchFilter | None,
    first: int | None,
    after: str | None,
    user_id: str | None = None,
    session_id: str | None = None,
) -> MemorySearchConnection:
    """One page of ``searchMemories`` (scoped to a user or session when given)."""
    settings = ctx.settings
    terms = check_search_query(query)
    size = settings.default_page_size if first is None else first
    if not 0 <= size <= settings.max_page_size:
        raise BadUserInput(f"first must be 0-{settings.max_page_size}, got {size}", field="first")
    key = None if after is None else cursor_key(after, ctx)
    given = _search_filter(filter, ctx, user_id=user_id, session_id=session_id)
    page = (
        SearchPage([], has_next_page=False)
        if given is None
        else await search_memories(
            ctx.db, project_id=ctx.project_id, terms=terms, given=given, size=size, after=key
        )
    )
    edges = [
        MemorySearchEdge(cursor=cursor_of(hit), node=Memory.from_doc(hit.row), score=hit.score)
        for hit in page.hits
    ]
    end = edges[-1].cursor if edges else None
    info = MemorySearchPageInfo(has_next_page=page.has_next_page, end_cursor=end)
    return MemorySearchConnection(edges=edges, page_info=info)
