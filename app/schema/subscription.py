"""Subscription root: a session's memories and changes, live (see ``app/db/live.py``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from enum import Enum
from typing import TYPE_CHECKING, Annotated, TypeVar

import strawberry

from memvault.db.live import SessionChangeKind as ChangeKind
from memvault.errors import BadUserInput, ServiceUnavailable
from memvault.schema.context import Info
from memvault.schema.inputs import SessionIdArgument
from memvault.schema.loaders import DataLoaders
from memvault.schema.types import Memory, Session
from memvault.validation import check_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable

    from memvault.db.live import ChangeHub
    from memvault.db.records import SessionDoc
    from memvault.schema.context import Context

T = TypeVar("T")
E = TypeVar("E")


@strawberry.enum(description="What happened to a session.")
class SessionChangeKind(Enum):
    UPDATED = strawberry.enum_value(
        ChangeKind.UPDATED.value, description="Its metadata or its user changed."
    )
    DELETED = strawberry.enum_value(ChangeKind.DELETED.value, description="It was deleted.")
    RESTORED = strawberry.enum_value(
        ChangeKind.RESTORED.value, description="It was restored or revived after a deletion."
    )


@strawberry.type(description="A change to a session, with the session as it is after it.")
class SessionChange:
    kind: SessionChangeKind = strawberry.field(description="What happened.")
    session: Session = strawberry.field(description="The session after the change.")

    @classmethod
    def from_change(cls, change: tuple[ChangeKind, SessionDoc]) -> SessionChange:
        kind, doc = change
        return cls(kind=SessionChangeKind(kind.value), session=Session.from_doc(doc))


AfterSeqArgument = Annotated[
    int | None,
    strawberry.argument(
        description="Deliver first every stored memory with a greater seq (the last seq the"
        " client has), then live ones; without it, only memories stored from now on."
    ),
]


@strawberry.type(description="Live updates, over WebSocket (graphql-transport-ws).")
class Subscription:
    @strawberry.subscription(
        description="Memories of a session as they are stored, in seq order. With afterSeq,"
        " first every stored memory with a greater seq, then live ones: no gap, no repeat,"
        " across reconnects."
    )
    async def memory_added(
        self, info: Info, session_id: SessionIdArgument, after_seq: AfterSeqArgument = None
    ) -> AsyncIterator[Memory]:
        # A coroutine returning the stream, not a generator: bad input and a missing session
        # are then an ``error`` message, before the subscription starts.
        ctx = info.context
        check_id(session_id, field="sessionId", settings=ctx.settings)
        if after_seq is not None and after_seq < 0:
            raise BadUserInput("afterSeq must be 0 or more", field="afterSeq")
        feed = await _hub(ctx).memories(
            project_id=ctx.project_id,
            session_id=session_id,
            after_seq=after_seq,
            on_too_slow=ctx.too_slow,
        )
        return _events(ctx, feed, Memory.from_doc)

    @strawberry.subscription(
        description="Changes to one session: its metadata or user updated, deleted, restored."
    )
    async def session_changed(
        self, info: Info, session_id: SessionIdArgument
    ) -> AsyncIterator[SessionChange]:
        ctx = info.context
        check_id(session_id, field="sessionId", settings=ctx.settings)
        feed = await _hub(ctx).session_changes(
            project_id=ctx.project_id, session_id=session_id, on_too_slow=ctx.too_slow
        )
        return _events(ctx, feed, SessionChange.from_change)


def _hub(ctx: Context) -> ChangeHub:
    if ctx.live is None:
        raise ServiceUnavailable("live updates are not available on this server")
    return ctx.live


async def _events(
    ctx: Context, feed: AsyncIterable[T], shown: Callable[[T], E]
) -> AsyncGenerator[E, None]:
    """The feed's items as the schema's objects. Each event's nested fields read the database
    as it is then: a connection's context lives as long as the connection, the loaders' caches
    only as long as one event."""
    async for item in feed:
        ctx.loaders = DataLoaders(db=ctx.db, project_id=ctx.project_id)
        yield shown(item)
