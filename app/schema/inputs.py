"""Input types. Optional fields default to UNSET, so "omitted" and "null" differ."""

from __future__ import annotations

from datetime import datetime

import strawberry

from memvault.schema.types import JSON, RoleType

UNSET = strawberry.UNSET


@strawberry.input
class CreateUserInput:
    user_id: str
    email: str | None = UNSET
    first_name: str | None = UNSET
    last_name: str | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.input
class UpsertUserInput:
    user_id: str
    email: str | None = UNSET
    first_name: str | None = UNSET
    last_name: str | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.input
class UpdateUserInput:
    user_id: str
    email: str | None = UNSET
    first_name: str | None = UNSET
    last_name: str | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.input
class CreateSessionInput:
    session_id: str
    user_id: str | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.input
class UpsertSessionInput:
    session_id: str
    user_id: str | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.input
class UpdateSessionInput:
    session_id: str
    metadata: JSON


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
