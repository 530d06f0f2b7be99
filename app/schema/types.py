"""Output types, scalars and global ids. Leaf fields are plain attributes filled from documents."""

from __future__ import annotations

import base64
import binascii
import functools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NewType

import strawberry

from memvault.db.records import MemoryRead, SessionRead, UserRead
from memvault.errors import BadUserInput, NotFound
from memvault.schema._upstream import ScalarDefinition
from memvault.schema.connection import Connection, PageArgs, connection, connection_field
from memvault.schema.context import Info
from memvault.schema.fastpath.executor import SERIALISED
from memvault.schema.fastpath.lookahead import memory_fields
from memvault.validation import MAX_TIME_MS, check_time_ms

if TYPE_CHECKING:  # (imported lazily by the schema: each imports this module)
    from memvault.schema.search import MemorySearchConnection

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
        description=(
            "An ISO 8601 instant; shown in UTC with milliseconds and Z"
            " (2026-01-31T12:00:00.000Z). As input, one without a time zone is UTC,"
            " sub-millisecond digits are dropped, and it must lie within"
            " 1970-01-01T00:00:00.000Z..9999-12-31T23:59:59.999Z (else BAD_USER_INPUT)."
        ),
        serialize=serialize_datetime,
        parse_value=parse_datetime,
    ),
    JSON: strawberry.scalar(
        name="JSON",
        description=(
            "A JSON object (metadata). As input: at most MEMVAULT_MAX_METADATA_BYTES"
            " (32768) encoded, MEMVAULT_MAX_METADATA_DEPTH (10) levels deep, keys of 1 to"
            " MEMVAULT_MAX_METADATA_KEY_LENGTH (128) characters, not starting with $, without"
            " . or NUL (else BAD_USER_INPUT)."
        ),
        serialize=_show_json,
        parse_value=_parse_json,
    ),
}


# searchMemories' arguments (Query, User, Session); its types live in search.py
QUERY = (
    'Words to find (all must match), "quoted phrases" (words in this order) and -words no'
    " result may hold; case and diacritics are folded. At most 1000 characters and 16 words"
    " (else BAD_USER_INPUT); other characters only separate words."
)
SearchQueryArgument = Annotated[str, strawberry.argument(description=QUERY)]
SearchConnection = Annotated["MemorySearchConnection", strawberry.lazy("memvault.schema.search")]
FirstArgument = Annotated[
    int | None,
    strawberry.argument(
        description="At most this many results: 0 to MEMVAULT_MAX_PAGE_SIZE (100); default"
        " MEMVAULT_DEFAULT_PAGE_SIZE (20)."
    ),
]
AfterArgument = Annotated[
    str | None,
    strawberry.argument(description="Only the results after this cursor (of this search)."),
]


@strawberry.enum(description="Who wrote a memory, as Zep's role types.")
class RoleType(Enum):
    USER = strawberry.enum_value("user", description="The human the agent talks to.")
    ASSISTANT = strawberry.enum_value("assistant", description="The AI agent.")
    SYSTEM = strawberry.enum_value("system", description="A system prompt or instruction.")
    TOOL = strawberry.enum_value("tool", description="A tool's output.")
    FUNCTION = strawberry.enum_value("function", description="A function call's output.")
    NOROLE = strawberry.enum_value("norole", description="No role given.")


@strawberry.input(
    description="Which memories a search may return; every given condition must hold."
)
class MemorySearchFilter:
    user_id: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Only memories of the sessions of the user with this id.",
    )
    session_id: str | None = strawberry.field(
        default=strawberry.UNSET, description="Only memories of the session with this id."
    )
    role_type: RoleType | None = strawberry.field(
        default=strawberry.UNSET, description="Only memories of this role type."
    )
    role: str | None = strawberry.field(
        default=strawberry.UNSET, description="Only memories with this role (exactly)."
    )
    created_after: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="Only those created strictly after this instant."
    )
    created_before: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="Only those created strictly before this instant."
    )
    metadata: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            "Only those whose metadata has each of these top-level keys equal to the given"
            " string, number or boolean."
        ),
    )


SearchFilterArgument = Annotated[
    MemorySearchFilter | None, strawberry.argument(description="Only the memories that match.")
]


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


# Computed leaves resolve only when selected; every other leaf is a plain attribute.
def resolve_id(root: Any) -> strawberry.ID:
    return strawberry.ID(to_global_id(type(root).__name__, getattr(root, root.NODE_KEY)))


@strawberry.interface(description="An object with a global id.")
class Node:
    NODE_KEY: ClassVar[str]  # the attribute the global id is made of
    id: strawberry.ID = strawberry.field(
        resolver=resolve_id, description="Global id (opaque): give it to Query.node."
    )
    created_ms: strawberry.Private[int]
    updated_ms: strawberry.Private[int]


def resolve_created_at(root: Any) -> datetime:
    return ms_to_datetime(shown_ms(root.created_ms))


def resolve_updated_at(root: Any) -> datetime:
    return ms_to_datetime(shown_ms(root.updated_ms))


# What the executor's plain leaves read instead of resolver then scalar (see executor.py)
CREATED_AT = {SERIALISED: lambda root: serialize_ms(root.created_ms)}
UPDATED_AT = {SERIALISED: lambda root: serialize_ms(root.updated_ms)}


def created_at_field(description: str) -> Any:
    """The ``createdAt`` field (from ``created_ms``, serialised in one step on the fast path)."""
    return strawberry.field(
        resolver=resolve_created_at, metadata=CREATED_AT, description=description
    )


def updated_at_field(description: str) -> Any:
    """The ``updatedAt`` field (from ``updated_ms``)."""
    return strawberry.field(
        resolver=resolve_updated_at, metadata=UPDATED_AT, description=description
    )


@strawberry.type(description="A user of the agent: a profile, metadata and sessions.")
class User(Node):
    NODE_KEY = "user_id"
    user_id: str = strawberry.field(description="The user's id, chosen by the client.")
    email: str | None = strawberry.field(description="Email address, if given.")
    first_name: str | None = strawberry.field(description="First name, if given.")
    last_name: str | None = strawberry.field(description="Last name, if given.")
    metadata: JSON = strawberry.field(description="Free-form metadata; {} when none.")
    created_at: datetime = created_at_field("When this user was created.")
    updated_at: datetime = updated_at_field("When this user last changed.")

    @classmethod
    def from_doc(cls, doc: UserRead) -> User:
        return cls(
            user_id=doc["user_id"],
            email=doc.get("email"),
            first_name=doc.get("first_name"),
            last_name=doc.get("last_name"),
            metadata=JSON(doc.get("metadata") or {}),
            created_ms=doc.get("created_ms", 0),  # shown_ms shows any stored value
            updated_ms=doc.get("updated_ms", 0),
        )

    @connection_field("This user's live sessions, oldest first (by creation time, then id).")
    def sessions(self, info: Info, page: PageArgs) -> Connection[Session]:
        loaders, user_id = info.context.loaders, self.user_id
        return connection(
            info.context.settings,
            page,
            kind="sessions",
            fetch=lambda window: loaders.sessions_of_user.load((user_id, window, None)),
            count=lambda: loaders.session_count_of_user.load(user_id),
            to_node=Session.from_doc,
        )

    @strawberry.field(description="This user's live memories matching a text query, best first.")
    async def search_memories(
        self,
        info: Info,
        query: SearchQueryArgument,
        filter: SearchFilterArgument = None,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> SearchConnection:
        from memvault.schema.search import search_connection

        return await search_connection(
            info.context, query=query, filter=filter, first=first, after=after, user_id=self.user_id
        )


@strawberry.type(description="A conversation: an ordered list of memories, maybe of a user.")
class Session(Node):
    NODE_KEY = "session_id"
    session_id: str = strawberry.field(description="The session's id, chosen by the client.")
    user_id: str | None = strawberry.field(
        description="The id of the user this session belongs to; null when none."
    )
    metadata: JSON = strawberry.field(description="Free-form metadata; {} when none.")
    created_at: datetime = created_at_field("When this session was created.")
    updated_at: datetime = updated_at_field("When this session last changed.")
    memory_count: int = strawberry.field(
        description="How many live memories the session has (maintained, not counted on read)."
    )

    @classmethod
    def from_doc(cls, doc: SessionRead) -> Session:
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

    @connection_field(
        "This session's live memories, oldest to newest by seq; last: N is the recent window."
    )
    def memories(self, info: Info, page: PageArgs) -> Connection[Memory]:
        loaders, session_id, fields = info.context.loaders, self.session_id, memory_fields(info)
        return connection(
            info.context.settings,
            page,
            kind="memories",
            fetch=lambda window: loaders.memories_of_session.load((session_id, window, fields)),
            count=self.memory_count,
            to_node=Memory.from_doc,
        )

    @strawberry.field(description="This session's live memories matching a text query, best first.")
    async def search_memories(
        self,
        info: Info,
        query: SearchQueryArgument,
        filter: SearchFilterArgument = None,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> SearchConnection:
        from memvault.schema.search import search_connection

        return await search_connection(
            info.context,
            query=query,
            filter=filter,
            first=first,
            after=after,
            session_id=self.session_id,
        )


@strawberry.type(description="One message of a session.")
class Memory(Node):
    NODE_KEY = "uuid"
    uuid: str = strawberry.field(
        description="The memory's id in its project: the one given to addMemories, else generated."
    )
    seq: int = strawberry.field(
        description=(
            "Its place in the session: unique there, never reused, increasing in the order"
            " memories were added; may have gaps."
        )
    )
    role: str | None = strawberry.field(
        description="Free-form name of who wrote it (e.g. a person's name), if given."
    )
    role_type: RoleType = strawberry.field(description="Which kind of author wrote it.")
    content: str = strawberry.field(description="The text of the message.")
    metadata: JSON = strawberry.field(description="Free-form metadata; {} when none.")
    token_count: int | None = strawberry.field(
        description="Token count as given by the client (not computed); null when not given."
    )
    created_at: datetime = created_at_field(
        "When this memory was created: the createdAt given to addMemories, else the"
        " server's clock (order by seq, not by this)."
    )
    updated_at: datetime = updated_at_field("When this memory last changed.")
    session_id: strawberry.Private[str]

    @classmethod
    def from_doc(cls, doc: MemoryRead) -> Memory:
        """The memory of a stored document; one read with a lookahead projection (see
        lookahead.py) leaves the fields its query did not select None."""
        get: Callable[[str], Any] = doc.get  # (a field left out is None, whatever its type)
        return cls(
            uuid=doc["uuid"],
            seq=doc["seq"],
            role=get("role"),
            role_type=ROLE_TYPES.get(get("role_type")),  # type: ignore[arg-type]
            content=get("content"),
            metadata=get("metadata") or {},  # type: ignore[arg-type]
            token_count=_shown_int(get("token_count")),
            created_ms=get("created_ms"),
            updated_ms=get("updated_ms"),
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
