"""Relay connections on keyset windows, and the one cursor codec.

A connection is lazy: rows, ``pageInfo`` flags and ``totalCount`` are each fetched only when a
query selects them, and all nested fetches go through DataLoaders.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, get_type_hints

import strawberry

from memvault.db import memories, sessions, users
from memvault.db.queries import Key, Window, key_after
from memvault.errors import BadUserInput

if TYPE_CHECKING:
    from memvault.config import Settings

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT", bound=Mapping[str, Any])

CURSOR_PREFIX = "mv1"
# Connections keyed by a number (a memory's place in its session); the others by a string.
NUMERIC_KINDS = frozenset({"memories"})
KEY_FIELDS = {
    "users": users.KEY_FIELD,
    "sessions": sessions.KEY_FIELD,
    "memories": memories.KEY_FIELD,
}
"""The stored field each kind of connection is ordered and keyed by (its cursors hold it)."""


def encode_cursor(kind: str, key: Key) -> str:
    """An opaque cursor for ``key`` in a connection of ``kind`` (users, sessions, memories)."""
    tag = "n" if isinstance(key, int) else "s"
    raw = f"{CURSOR_PREFIX}:{kind}:{tag}:{key}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def max_cursor_length(max_id_length: int) -> int:
    """The length of the longest cursor :func:`encode_cursor` makes: after the prefix, a time
    of up to 20 digits and an id of ``max_id_length`` characters, 4 bytes each in UTF-8."""
    longest = len(f"{CURSOR_PREFIX}:sessions:s:") + 20 + 4 * max_id_length
    return 4 * -(-longest // 3)


def decode_cursor(cursor: str, *, kind: str, field: str) -> Key:
    """The key behind a cursor of this ``kind``; BAD_USER_INPUT when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        prefix, cursor_kind, tag, key = raw.split(":", 3)
        if prefix != CURSOR_PREFIX or cursor_kind != kind or tag not in {"n", "s"} or not key:
            raise ValueError(raw)
        if (tag == "n") != (kind in NUMERIC_KINDS):  # a forged cursor with the wrong key type
            raise ValueError(raw)
        return int(key) if tag == "n" else key
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput(f"{field}: not a valid {kind} cursor", field=field) from None


@dataclass(frozen=True, slots=True)
class PageArgs:
    """Validated Relay arguments."""

    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    def check(self, settings: Settings) -> PageArgs:
        """These arguments, or BAD_USER_INPUT; cursors are measured before anything keeps them
        (:func:`plan_page` caches by these arguments)."""
        if self.first is not None and self.last is not None:
            raise BadUserInput("give first or last, not both", field="first")
        max_size = settings.max_page_size
        for name, value in (("first", self.first), ("last", self.last)):
            if value is not None and not 0 <= value <= max_size:
                raise BadUserInput(f"{name} must be 0-{max_size}, got {value}", field=name)
        longest = max_cursor_length(settings.max_id_length)
        for name, cursor in (("after", self.after), ("before", self.before)):
            if cursor is not None and len(cursor) > longest:
                raise BadUserInput(
                    f"{name}: not a valid cursor (longer than {longest} characters)", field=name
                )
        return self


@dataclass(frozen=True, slots=True)
class Plan:
    """What to fetch for a page and how to read the answer."""

    window: Window  # the page, with one extra row to tell whether more exist
    size: int
    backward: bool
    before_window: Window | None  # rows before the page exist? (None: known to be none)
    after_window: Window | None  # rows after the page exist? (None: known to be none)


@functools.lru_cache(maxsize=1024)
def plan_page(args: PageArgs, *, kind: str, base: Window, default_size: int) -> Plan:
    """Turn Relay arguments into keyset windows inside ``base`` (the filter's key range).

    Cached: a nested query plans the same page for every parent (a hundred sessions' windows).
    Only for arguments that passed :meth:`PageArgs.check`, which bounds the cursors' length.
    """
    window = base
    after_key = before_key = None
    if args.after is not None:
        after_key = decode_cursor(args.after, kind=kind, field="after")
        window = window.narrowed(gte=key_after(after_key))
    if args.before is not None:
        before_key = decode_cursor(args.before, kind=kind, field="before")
        window = window.narrowed(lt=before_key)
    backward = args.last is not None
    size = (
        args.last
        if args.last is not None
        else (args.first if args.first is not None else default_size)
    )
    page = Window(gte=window.gte, lt=window.lt, descending=backward, limit=size + 1)
    before_window = (
        base.narrowed(lt=key_after(after_key)).with_limit(1, descending=True)
        if after_key is not None
        else None
    )
    after_window = (
        base.narrowed(gte=before_key).with_limit(1, descending=False)
        if before_key is not None
        else None
    )
    return Plan(page, size, backward, before_window, after_window)


def page_plan(settings: Settings, page: PageArgs, *, kind: str, base: Window | None = None) -> Plan:
    """The keyset windows of a page of ``kind`` inside ``base`` (the filter's key range), for
    arguments checked first."""
    return plan_page(
        page.check(settings),
        kind=kind,
        base=Window() if base is None else base,
        default_size=settings.default_page_size,
    )


Fetch = Callable[[Window], Awaitable[Sequence[RowT]]]
Count = int | Callable[[], Awaitable[int]]
"""A connection's ``totalCount``, or how to read it."""


@dataclass(eq=False, slots=True)
class PageSource(Generic[RowT]):
    """Fetches a connection's rows and flags on first use, once each."""

    plan: Plan
    kind: str
    fetch: Fetch[RowT]
    count: Count
    to_node: Callable[[RowT], Any]
    _rows: Sequence[RowT] | None = field(default=None, init=False)
    _more: bool = field(default=False, init=False)
    # nodes, edges and pageInfo's fields ask for the rows at once: the first caller reads them
    # while the others wait for it (on a future made only then), so a page is one read however
    # many of them are selected
    _reading: bool = field(default=False, init=False)
    _read: asyncio.Future[None] | None = field(default=None, init=False)

    async def rows(self) -> Sequence[RowT]:
        while self._rows is None:
            if self._reading:  # then look again: if that read failed, this caller reads
                if self._read is None:
                    self._read = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._read)  # (a caller cancelled cancels none of the others)
                continue
            self._reading = True
            try:
                # (also for a page of size 0: its one extra row says whether any is beyond it)
                fetched = await self.fetch(self.plan.window)
                self._more = len(fetched) > self.plan.size
                rows = fetched[: self.plan.size]
                self._rows = rows[::-1] if self.plan.backward else rows
            finally:
                self._reading = False
                read, self._read = self._read, None
                if read is not None:
                    read.set_result(None)
        return self._rows

    async def nodes(self) -> list[Any]:
        return [self.to_node(doc) for doc in await self.rows()]

    def cursor(self, doc: RowT) -> str:
        return encode_cursor(self.kind, doc[KEY_FIELDS[self.kind]])

    async def _exists(self, window: Window | None) -> bool:
        return window is not None and bool(await self.fetch(window))

    async def has_next_page(self) -> bool:
        if self.plan.backward:
            return await self._exists(self.plan.after_window)
        await self.rows()
        return self._more

    async def has_previous_page(self) -> bool:
        if self.plan.backward:
            await self.rows()
            return self._more
        return await self._exists(self.plan.before_window)

    async def total_count(self) -> int:
        return self.count if isinstance(self.count, int) else await self.count()


@strawberry.type(description="Where a page sits in its connection.")
class PageInfo:
    source: strawberry.Private[PageSource[Any]]

    @strawberry.field(description="Whether items exist after this page (within the filter).")
    async def has_next_page(self) -> bool:
        return await self.source.has_next_page()

    @strawberry.field(description="Whether items exist before this page (within the filter).")
    async def has_previous_page(self) -> bool:
        return await self.source.has_previous_page()

    @strawberry.field(description="The cursor of the page's first item; null when it is empty.")
    async def start_cursor(self) -> str | None:
        rows = await self.source.rows()
        return self.source.cursor(rows[0]) if rows else None

    @strawberry.field(description="The cursor of the page's last item; null when it is empty.")
    async def end_cursor(self) -> str | None:
        rows = await self.source.rows()
        return self.source.cursor(rows[-1]) if rows else None


@strawberry.type(description="An item of a page with its cursor.")
class Edge(Generic[NodeT]):
    cursor: str = strawberry.field(
        description=(
            "This item's place in the list, opaque (do not build or parse it): give it as after"
            " or before. One not made by this kind of list is BAD_USER_INPUT."
        )
    )
    node: NodeT = strawberry.field(description="The item.")


@strawberry.type(
    description=(
        "A page of a list (Relay connection), in the list's order; first/after page forward,"
        " last/before backward."
    )
)
class Connection(Generic[NodeT]):
    source: strawberry.Private[PageSource[Any]]

    @strawberry.field(description="The page's items with their cursors.")
    async def edges(self) -> list[Edge[NodeT]]:
        rows = await self.source.rows()
        return [Edge(cursor=self.source.cursor(doc), node=self.source.to_node(doc)) for doc in rows]

    @strawberry.field(description="The page's items (edges without cursors).")
    async def nodes(self) -> list[NodeT]:
        return await self.source.nodes()

    @strawberry.field(description="Cursors of the page's ends and whether more items exist.")
    def page_info(self) -> PageInfo:
        return PageInfo(source=self.source)

    @strawberry.field(description="Items in the whole connection (all pages), live only.")
    async def total_count(self) -> int:
        return await self.source.total_count()


def connection(
    settings: Settings,
    page: PageArgs,
    *,
    kind: str,
    fetch: Fetch[RowT],
    count: Count,
    to_node: Callable[[RowT], NodeT],
    base: Window | None = None,
) -> Connection[NodeT]:
    """The ``page`` of a connection of ``kind``: ``fetch`` reads the rows of a keyset window
    (inside ``base``), ``to_node`` makes each a node, ``count`` answers ``totalCount``."""
    plan = page_plan(settings, page, kind=kind, base=base)
    return Connection(source=PageSource(plan, kind, fetch, count, to_node))


RELAY_DESCRIPTIONS = {
    "first": (
        "Page forward: at most this many items from the start (or after `after`); 0 to"
        " MEMVAULT_MAX_PAGE_SIZE (100), not with last. Neither given:"
        " MEMVAULT_DEFAULT_PAGE_SIZE (20) from the start."
    ),
    "after": "Only the items after this cursor (an endCursor or edge cursor of this list).",
    "last": (
        "Page backward: at most this many items from the end (or before `before`), still in"
        " the list's order; 0 to MEMVAULT_MAX_PAGE_SIZE (100), not with first."
    ),
    "before": "Only the items before this cursor (a startCursor or edge cursor of this list).",
}
RELAY_ARGUMENTS = tuple(
    inspect.Parameter(
        name,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[type_, strawberry.argument(description=RELAY_DESCRIPTIONS[name])],
    )
    for name, type_ in get_type_hints(PageArgs).items()
)
"""The arguments of every connection field: :class:`PageArgs`'s, in its order."""


def connection_field(description: str) -> Callable[[Callable[..., Connection[Any]]], Any]:
    """A connection field from a resolver that takes the Relay arguments as ``page:
    PageArgs``: the schema shows ``first``, ``after``, ``last``, ``before`` in its place."""

    def make(resolver: Callable[..., Connection[Any]]) -> Any:
        signature = inspect.signature(resolver)
        parameters = [
            shown
            for parameter in signature.parameters.values()
            for shown in (RELAY_ARGUMENTS if parameter.name == "page" else (parameter,))
        ]

        @functools.wraps(resolver)
        def resolve(
            *args: Any,
            first: int | None = None,
            after: str | None = None,
            last: int | None = None,
            before: str | None = None,
            **kwargs: Any,
        ) -> Connection[Any]:
            return resolver(*args, page=PageArgs(first, after, last, before), **kwargs)

        # Strawberry reads a resolver's arguments from its signature (inspect.signature)
        resolve.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return strawberry.field(resolver=resolve, description=description)

    return make
