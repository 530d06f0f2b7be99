"""Output types, scalars and global ids. Leaf fields are plain attributes filled from documents."""

from __future__ import annotations

import base64
import binascii
import functools
import math
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from memvault.config import Settings
from memvault.db.documents import Doc, Window
from memvault.errors import BadUserInput, NotFound
from memvault.schema.connection import Connection, PageArgs, PageSource, Plan, plan_page
from memvault.schema.context import Info
from memvault.schema.executor import SERIALISED
from memvault.schema.lookahead import memory_fields
from memvault.validation import MAX_TIME_MS, check_time_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
# The instants a DateTime can show: years 1 to 9999 (as far as datetime and ISO 8601 text go)
FIRST_SHOWN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
LAST_SHOWN_MS = MAX_TIME_MS  # 9999-12-31T23:59:59.999Z, also the last time accepted as input


def shown_ms(value: Any) -> int:
    """A stored time as milliseconds a DateTime can show, whatever was stored: beyond year 1 or
    9999 it is clamped to that end; what is not a number (written around the API) is the epoch.
    So reading a bad stored time never fails, and never takes its neighbours with it."""
    if isinstance(value, datetime):  # a BSON date written by hand (naive: UTC)
        value = datetime_to_ms(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0
    return int(min(max(value, FIRST_SHOWN_MS), LAST_SHOWN_MS))


def ms_to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(value: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // ONE_MS


def serialize_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def serialize_ms(ms: int) -> str:
    """``serialize_datetime(ms_to_datetime(shown_ms(ms)))`` in one step, ~10x faster: the text of
    each second is cached, and the memories of a window share few seconds."""
    if type(ms) is not int or not FIRST_SHOWN_MS <= ms <= LAST_SHOWN_MS:
        ms = shown_ms(ms)
    seconds, millis = divmod(ms, 1000)
    return f"{_second_text(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=seconds)).isoformat(timespec="seconds")[:19]


def parse_datetime(value: Any) -> datetime:
    """An ISO 8601 instant within the range every stored time must keep (see
    ``check_time_ms``); out of it is BAD_USER_INPUT, also as a literal in the document."""
    if not isinstance(value, str):
        raise ValueError("DateTime must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"DateTime {value!r} is not ISO 8601 (e.g. 2026-01-31T12:00:00.000Z)"
        ) from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    check_time_ms(datetime_to_ms(parsed), what=f"DateTime {value!r}")
    return parsed


def _show_json(value: Any) -> Any:
    """Stored metadata as JSON can carry it, whatever was stored: a value written around the
    API (a NaN, a date, an ObjectId, ...) is shown as null or text instead of failing the
    whole response. Clean values (all of the API's) come back as they are, uncopied."""
    if _is_json(value):
        return value
    shown = _as_json(value)
    return {} if shown is None else shown  # metadata is JSON!: null would fail the parent


def _is_json(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        return all(type(key) is str and _is_json(item) for key, item in value.items())
    if kind is list:
        return all(_is_json(item) for item in value)
    return kind is float and math.isfinite(value)


def _as_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json(item) for item in value]
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return serialize_ms(datetime_to_ms(value))
    return str(value)


def _parse_json(value: Any) -> Any:
    """Any JSON value: resolvers check the shape (a JSON object) to answer BAD_USER_INPUT with
    the field's name, which a scalar parse error cannot."""
    return value


JSON = NewType("JSON", dict)  # type: ignore[type-arg]
"""A JSON object (metadata)."""

SCALARS: dict[object, ScalarDefinition] = {
    datetime: strawberry.scalar(
        name="DateTime",
        description="An ISO 8601 instant; shown in UTC with milliseconds and Z.",
        serialize=serialize_datetime,
        parse_value=parse_datetime,
    ),
    JSON: strawberry.scalar(
        name="JSON",
        description="A JSON object.",
        serialize=_show_json,
        parse_value=_parse_json,
    ),
}


@strawberry.enum(description="Who wrote a memory, as Zep's role types.")
class RoleType(Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"
    FUNCTION = "function"
    NOROLE = "norole"


ROLE_TYPES = {role.value: role for role in RoleType}
"""Stored role type -> enum member (a dict lookup is ~3x cheaper than ``RoleType(value)``)."""


def to_global_id(type_name: str, key: str) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{key}".encode()).decode().rstrip("=")


def from_global_id(global_id: str) -> tuple[str, str]:
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, key = base64.urlsafe_b64decode(padded.encode("ascii")).decode().split(":", 1)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput("id: not a valid node id", field="id") from None
    if type_name not in NODE_TYPES or not key:
        raise BadUserInput("id: not a valid node id", field="id")
    return type_name, key


def memories_plan(settings: Settings, args: PageArgs) -> Plan:
    """The keyset windows of ``Session.memories`` for these arguments (also used to prefetch)."""
    return plan_page(
        args.check(settings),
        kind="memories",
        base=Window(),
        default_size=settings.default_page_size,
    )


@strawberry.interface(description="An object with a global id.")
class Node:
    id: strawberry.ID


# Computed leaves resolve only when selected; every other leaf is a plain attribute.
def resolve_id(root: Any) -> strawberry.ID:
    return strawberry.ID(to_global_id(type(root).__name__, getattr(root, root.NODE_KEY)))


def resolve_created_at(root: Any) -> datetime:
    return ms_to_datetime(shown_ms(root.created_ms))


def resolve_updated_at(root: Any) -> datetime:
    return ms_to_datetime(shown_ms(root.updated_ms))


# What the executor's plain leaves read instead of resolver then scalar (see executor.py)
CREATED_AT = {SERIALISED: lambda root: serialize_ms(root.created_ms)}
UPDATED_AT = {SERIALISED: lambda root: serialize_ms(root.updated_ms)}


@strawberry.type
class User(Node):
    NODE_KEY = "user_id"
    id: strawberry.ID = strawberry.field(resolver=resolve_id)
    user_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    metadata: JSON
    created_at: datetime = strawberry.field(resolver=resolve_created_at, metadata=CREATED_AT)
    updated_at: datetime = strawberry.field(resolver=resolve_updated_at, metadata=UPDATED_AT)
    created_ms: strawberry.Private[int]
    updated_ms: strawberry.Private[int]

    @classmethod
    def from_doc(cls, doc: Doc) -> User:
        return cls(
            user_id=doc["user_id"],
            email=doc.get("email"),
            first_name=doc.get("first_name"),
            last_name=doc.get("last_name"),
            metadata=JSON(doc.get("metadata") or {}),
            created_ms=doc.get("created_ms", 0),  # shown_ms shows any stored value
            updated_ms=doc.get("updated_ms", 0),
        )

    @strawberry.field(description="This user's live sessions, oldest first.")
    def sessions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Session]:
        ctx = info.context
        args = PageArgs(first, after, last, before).check(ctx.settings)
        plan = plan_page(
            args, kind="sessions", base=Window(), default_size=ctx.settings.default_page_size
        )
        loaders, user_id = ctx.loaders, self.user_id

        async def fetch(window: Window) -> list[Doc]:
            return await loaders.sessions_of_user.load((user_id, window, None))

        async def count() -> int:
            return await loaders.session_count_of_user.load(user_id)

        source = PageSource(
            plan,
            kind="sessions",
            key_field="order_key",
            fetch=fetch,
            to_node=Session.from_doc,
            count=count,
        )
        return Connection(source=source)


@strawberry.type
class Session(Node):
    NODE_KEY = "session_id"
    id: strawberry.ID = strawberry.field(resolver=resolve_id)
    session_id: str
    user_id: str | None
    metadata: JSON
    created_at: datetime = strawberry.field(resolver=resolve_created_at, metadata=CREATED_AT)
    updated_at: datetime = strawberry.field(resolver=resolve_updated_at, metadata=UPDATED_AT)
    created_ms: strawberry.Private[int]
    updated_ms: strawberry.Private[int]
    memory_count: int

    @classmethod
    def from_doc(cls, doc: Doc) -> Session:
        return cls(
            session_id=doc["session_id"],
            user_id=doc.get("user_id") or None,
            metadata=JSON(doc.get("metadata") or {}),
            created_ms=doc.get("created_ms", 0),  # shown_ms shows any stored value
            updated_ms=doc.get("updated_ms", 0),
            memory_count=max(int(doc.get("memory_count", 0)), 0),
        )

    @strawberry.field(description="The user this session belongs to, if any.")
    async def user(self, info: Info) -> User | None:
        if self.user_id is None:
            return None
        doc = await info.context.loaders.user.load(self.user_id)
        return User.from_doc(doc) if doc else None

    @strawberry.field(
        description="This session's live memories, oldest first; last: N is the recent window."
    )
    def memories(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Memory]:
        ctx = info.context
        plan = memories_plan(ctx.settings, PageArgs(first, after, last, before))
        loaders, session_id, total = ctx.loaders, self.session_id, self.memory_count
        fields = memory_fields(info)

        async def fetch(window: Window) -> list[Doc]:
            return await loaders.memories_of_session.load((session_id, window, fields))

        async def count() -> int:
            return total

        source = PageSource(
            plan,
            kind="memories",
            key_field="seq",
            fetch=fetch,
            to_node=Memory.from_doc,
            count=count,
        )
        return Connection(source=source)


@strawberry.type
class Memory(Node):
    NODE_KEY = "uuid"
    id: strawberry.ID = strawberry.field(resolver=resolve_id)
    uuid: str
    seq: int
    role: str | None
    role_type: RoleType
    content: str
    metadata: JSON
    token_count: int | None
    created_at: datetime = strawberry.field(resolver=resolve_created_at, metadata=CREATED_AT)
    updated_at: datetime = strawberry.field(resolver=resolve_updated_at, metadata=UPDATED_AT)
    created_ms: strawberry.Private[int]
    updated_ms: strawberry.Private[int]
    session_id: strawberry.Private[str]

    @classmethod
    def from_doc(cls, doc: Doc) -> Memory:
        """The memory of a stored document; one read with a lookahead projection (see
        lookahead.py) leaves the fields its query did not select None."""
        get = doc.get
        return cls(
            uuid=doc["uuid"],
            seq=doc["seq"],
            role=get("role"),
            role_type=ROLE_TYPES.get(get("role_type")),  # type: ignore[arg-type]
            content=get("content"),  # type: ignore[arg-type]
            metadata=get("metadata") or {},  # type: ignore[arg-type]
            token_count=_shown_int(get("token_count")),
            created_ms=get("created_ms"),  # type: ignore[arg-type]
            updated_ms=get("updated_ms"),  # type: ignore[arg-type]
            session_id=doc["session_id"],
        )

    @strawberry.field(description="The session this memory belongs to.")
    async def session(self, info: Info) -> Session:
        doc = await info.context.loaders.session.load(self.session_id)
        if doc is None:  # deleted between reading the memory and its session
            raise NotFound(f"session {self.session_id!r} of memory {self.uuid!r} was deleted")
        return Session.from_doc(doc)


def _shown_int(value: Any) -> int | None:
    """A stored optional count as GraphQL's Int can show it (32 bits), else null: the API
    stores no other, but a value written around it must not fail the read."""
    if type(value) is int and -(2**31) <= value < 2**31:
        return value
    return None


NODE_TYPES = {"User": User, "Session": Session, "Memory": Memory}
