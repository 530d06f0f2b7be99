"""The client's models: Zep's shapes (``Session``, ``User``, ``Message``, ``Memory``, the user
requests) as typed dataclasses, plus the page of a cursor listing.

Times are timezone-aware ``datetime`` objects in UTC. Metadata is a JSON object (a ``dict``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

if TYPE_CHECKING:
    from datetime import datetime

    from _typeshed import DataclassInstance

RoleType = Literal["user", "assistant", "system", "tool", "function", "norole"]
"""Who wrote a message, as Zep writes role types."""

ROLE_TYPES: tuple[RoleType, ...] = ("user", "assistant", "system", "tool", "function", "norole")

# Roles that older Zep code (and LangChain) writes without a role type.
_ROLE_ALIASES: dict[str, RoleType] = {"human": "user", "ai": "assistant", "bot": "assistant"}

T = TypeVar("T")


class _Model:
    def to_dict(self: DataclassInstance) -> dict[str, Any]:
        """The fields as a dict (nested models too)."""
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class Message(_Model):
    """One chat message (a memvault *memory*).

    ``role_type`` is one of ``ROLE_TYPES`` (any case). When it is omitted it is read from
    ``role`` ("user", "assistant", ..., and "human"/"ai") and is "norole" otherwise. ``uuid`` is
    assigned by the client before a message is first sent, so a retried ``add`` never stores a
    message twice; ``seq``, ``created_at`` and ``updated_at`` come from the server.
    """

    content: str
    role: str | None = None
    role_type: RoleType | None = None
    metadata: dict[str, Any] | None = None
    token_count: int | None = None
    uuid: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    seq: int | None = None

    def __post_init__(self) -> None:
        self.role_type = normalize_role_type(self.role_type, self.role)


def normalize_role_type(role_type: str | None, role: str | None = None) -> RoleType:
    """``role_type`` in Zep's lower-case spelling; ValueError for one that is not a role type."""
    if role_type is None:
        guess = (role or "").strip().lower()
        return _ROLE_ALIASES.get(guess) or _known_role_type(guess) or "norole"
    known = _known_role_type(str(role_type).lower())
    if known is None:
        raise ValueError(f"role_type must be one of {', '.join(ROLE_TYPES)}; got {role_type!r}")
    return known


def _known_role_type(value: str) -> RoleType | None:
    for known in ROLE_TYPES:
        if value == known:
            return known
    return None


@dataclass(kw_only=True)
class Memory(_Model):
    """A session's messages, oldest first (what Zep's ``memory.get`` returns)."""

    messages: list[Message] = field(default_factory=list)


@dataclass(kw_only=True)
class MemorySearchResult(_Model):
    """A message found by ``memory.search``, its session and its relevance (higher is better;
    comparable only within one search), as Zep's search results."""

    message: Message
    score: float
    session_id: str


@dataclass(kw_only=True)
class Session(_Model):
    """A conversation. ``id`` is memvault's global id (for GraphQL's ``node``)."""

    session_id: str
    user_id: str | None = None
    metadata: dict[str, Any] | None = None
    id: str | None = None
    memory_count: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(kw_only=True)
class _Profile:
    """A user's id and profile: the first fields of a user and of the user requests."""

    user_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None


@dataclass(kw_only=True)
class User(_Profile, _Model):
    """A user. ``id`` is memvault's global id (for GraphQL's ``node``)."""

    metadata: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(kw_only=True)
class _UserRequest(_Profile):
    metadata: dict[str, Any] | None = None


@dataclass(kw_only=True)
class CreateUserRequest(_UserRequest):
    """A new user."""


@dataclass(kw_only=True)
class UpdateUserRequest(_UserRequest):
    """Changes to a user: a field left ``None`` is unchanged; ``metadata`` is merged (JSON Merge
    Patch: a key set to ``None`` is removed)."""


@dataclass
class Page(Sequence[T], Generic[T]):
    """One page of a listing. It is a sequence of its items (so Zep code that expects a list
    still works) and carries the opaque cursors to continue from.

    ``next_cursor`` is the cursor to pass for the next page, ``None`` when this is the last page
    for now. ``end_cursor`` is the position after this page's last item even on the last page:
    keep it to pick up, later, only the items created since.
    """

    items: list[T]
    next_cursor: str | None = None
    end_cursor: str | None = None

    @property
    def has_next_page(self) -> bool:
        return self.next_cursor is not None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self.items[index]


@dataclass
class SessionPage(Page[Session]):
    """A page of sessions; ``sessions`` is the same list as ``items``."""

    @property
    def sessions(self) -> list[Session]:
        return self.items


@dataclass
class UserPage(Page[User]):
    """A page of users; ``users`` is the same list as ``items``."""

    @property
    def users(self) -> list[User]:
        return self.items
