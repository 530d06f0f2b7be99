"""What the repositories return: the stored documents, the parts of them that reads project,
the collections typed by them, and the driver types other layers name (so that only ``app/db``
imports PyMongo).

A ``*Read`` is what a read for the API returns (its projection is built from the type's keys);
a ``*Doc`` is the whole stored document, which writes return. Documents written around the API
may lack fields or hold other types: readers use ``.get`` and show what they find.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

if TYPE_CHECKING:
    from bson import ObjectId
    from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]
"""A document or filter as the driver sees it."""
Database = AsyncDatabase[Doc]
Client = AsyncMongoClient[Doc]


def read_fields(record: type) -> tuple[str, ...]:
    """The stored fields of a ``*Read`` type, in declaration order (its projection)."""
    return tuple(name for name in record.__annotations__ if name != "_id")


class UserRead(TypedDict):
    """A user as the API reads it."""

    user_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    metadata: dict[str, Any]
    order_key: str  # creation time, then the id: the key of user listings
    created_ms: int
    updated_ms: int


class UserDoc(UserRead):
    _id: NotRequired[ObjectId]  # set by the insert
    project_id: str
    deleted_ms: int  # 0: live
    deletion_id: str  # the token of the deletion that took it ("" when live)
    version: int  # optimistic concurrency of patches


class SessionRead(TypedDict):
    """A session as the API reads it."""

    session_id: str
    user_id: str  # "" for a session without a user
    metadata: dict[str, Any]
    order_key: str  # creation time, then the id: the key of session listings
    created_ms: int
    updated_ms: int
    memory_count: int


class SessionDoc(SessionRead):
    _id: NotRequired[ObjectId]
    project_id: str
    deleted_ms: int
    deletion_id: str
    version: int
    next_seq: int  # the last seq reserved
    deletions: NotRequired[int]  # times deleted (missing on sessions stored before it existed)


class MemoryRead(TypedDict):
    """A memory as the API reads it: the keys always, the rest as the read's shape asks
    (``memories.MEMORY_SHAPES``)."""

    session_id: str
    uuid: str
    seq: int  # position in the session: the key of its memories connection
    seq_key: str  # project, session and seq in one string (see ``memories.seq_key``)
    role: NotRequired[str | None]
    role_type: NotRequired[str]
    content: NotRequired[str]
    metadata: NotRequired[dict[str, Any]]
    token_count: NotRequired[int | None]
    created_ms: NotRequired[int]
    updated_ms: NotRequired[int]


class MemoryDoc(MemoryRead):
    _id: NotRequired[ObjectId]
    project_id: str
    deleted_ms: int
    deletion_id: str
    version: int


class ApiKeyRead(TypedDict):
    """An API key's record as listed (no hash)."""

    key_id: str
    project_id: str
    scope: str
    name: str
    created_ms: int
    revoked_ms: int  # 0: active


class ApiKeyDoc(ApiKeyRead):
    _id: NotRequired[ObjectId]
    key_hash: str  # SHA-256 of the key; the key itself is never stored


class AuthStateDoc(TypedDict):
    """The store's auth state (``_id`` "auth"): present once its first API key was created."""

    _id: str
    closed_ms: int  # when the first key was created (or first noticed)
    first_key_id: str | None


def user_docs(db: Database) -> AsyncCollection[UserDoc]:
    return cast("AsyncCollection[UserDoc]", db["users"])


def session_docs(db: Database) -> AsyncCollection[SessionDoc]:
    return cast("AsyncCollection[SessionDoc]", db["sessions"])


def memory_docs(db: Database) -> AsyncCollection[MemoryDoc]:
    return cast("AsyncCollection[MemoryDoc]", db["memories"])


def api_key_docs(db: Database) -> AsyncCollection[ApiKeyDoc]:
    return cast("AsyncCollection[ApiKeyDoc]", db["api_keys"])


def service_state_docs(db: Database) -> AsyncCollection[AuthStateDoc]:
    return cast("AsyncCollection[AuthStateDoc]", db["service_state"])
