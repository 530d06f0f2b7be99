"""Input types. Optional fields default to UNSET, so "omitted" and "null" differ.

``UserInput``, ``SessionKeyInput`` and ``SessionInput`` are bases: no field takes them, so they
are not in the schema; their fields come first in each input made from them.
"""

from __future__ import annotations

from datetime import datetime

import strawberry

from memvault.schema.types import JSON, RoleType

UNSET = strawberry.UNSET

# Users


@strawberry.input
class UserInput:
    """A user's id and profile: what createUser, upsertUser and updateUser take."""

    user_id: str
    email: str | None = UNSET
    first_name: str | None = UNSET
    last_name: str | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.input
class CreateUserInput(UserInput): ...


@strawberry.input
class UpdateUserInput(UserInput): ...


@strawberry.input
class UpsertUserInput(UserInput): ...


# Sessions


@strawberry.input
class SessionKeyInput:
    session_id: str


@strawberry.input
class SessionInput(SessionKeyInput):
    """A session's id, user and metadata: what createSession and upsertSession take."""

    user_id: str | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.input
class CreateSessionInput(SessionInput): ...


@strawberry.input
class UpdateSessionInput(SessionKeyInput):
    metadata: JSON


@strawberry.input
class UpsertSessionInput(SessionInput): ...


# Memories


@strawberry.input
class MemoryInput:
    uuid: str | None = UNSET
    role: str | None = UNSET
    role_type: RoleType
    content: str
    metadata: JSON | None = UNSET
    token_count: int | None = UNSET
    created_at: datetime | None = UNSET


@strawberry.input
class AddMemoriesInput:
    session_id: str
    user_id: str | None = UNSET
    memories: list[MemoryInput]


@strawberry.input
class UpdateMemoryInput:
    uuid: str
    content: str | None = UNSET
    metadata: JSON | None = UNSET


# Filters


@strawberry.input
class UserFilter:
    created_after: datetime | None = UNSET
    created_before: datetime | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.input
class SessionFilter:
    user_id: str | None = UNSET
    created_after: datetime | None = UNSET
    created_before: datetime | None = UNSET
    metadata: JSON | None = UNSET
