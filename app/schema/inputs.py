"""Input types. Optional fields default to UNSET, so "omitted" and "null" differ.

``UserInput``, ``SessionKeyInput`` and ``SessionInput`` are bases: no field takes them, so they
are not in the schema; their fields come first in each input made from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry

from memvault.schema.types import JSON, RoleType

USER_ID = "The user's id: 1 to MEMVAULT_MAX_ID_LENGTH (256) characters, no control characters."
SESSION_ID = (
    "The session's id: 1 to MEMVAULT_MAX_ID_LENGTH (256) characters, no control characters."
)
PROFILE = "; at most MEMVAULT_MAX_ID_LENGTH (256) characters. Omitted: left as is; null: cleared."
MERGE = "JSON Merge Patch, RFC 7396: objects merge, null removes a key, anything else replaces"
METADATA = (
    "Metadata: a create stores it (omitted or null: {}); an upsert or update merges it into the"
    " stored object (" + MERGE + "; omitted, null or {}: unchanged)."
)

UNSET = strawberry.UNSET

# Arguments that are ids
UserIdArgument = Annotated[str, strawberry.argument(description=USER_ID)]
SessionIdArgument = Annotated[str, strawberry.argument(description=SESSION_ID)]
UuidArgument = Annotated[str, strawberry.argument(description="The memory's uuid.")]

# Users


@strawberry.input
class UserInput:
    """A user's id and profile: what createUser, upsertUser and updateUser take."""

    user_id: str = strawberry.field(description=USER_ID)
    email: str | None = strawberry.field(
        default=UNSET, description="Email address (must look like one)" + PROFILE
    )
    first_name: str | None = strawberry.field(default=UNSET, description="First name" + PROFILE)
    last_name: str | None = strawberry.field(default=UNSET, description="Last name" + PROFILE)
    metadata: JSON | None = strawberry.field(default=UNSET, description=METADATA)


@strawberry.input(description="A new user: createUser stores the given fields and metadata.")
class CreateUserInput(UserInput): ...


@strawberry.input(
    description="Changes to a live user: given fields are set (null clears), metadata merged."
)
class UpdateUserInput(UserInput): ...


@strawberry.input(
    description=(
        "A user to create, or to change like updateUser (a soft-deleted one is revived and"
        " merged into its old metadata)."
    )
)
class UpsertUserInput(UserInput): ...


# Sessions


@strawberry.input
class SessionKeyInput:
    session_id: str = strawberry.field(description=SESSION_ID)


@strawberry.input
class SessionInput(SessionKeyInput):
    """A session's id, user and metadata: what createSession and upsertSession take."""

    user_id: str | None = strawberry.field(
        default=UNSET,
        description=(
            "The id of the live user the session belongs to (NOT_FOUND when there is none)."
            " upsertSession attaches a stored session that has no user to it; one that has"
            " another user is CONFLICT. Omitted or null: none given."
        ),
    )
    metadata: JSON | None = strawberry.field(default=UNSET, description=METADATA)


@strawberry.input(description="A new session, maybe of a user.")
class CreateSessionInput(SessionInput): ...


@strawberry.input(description="Metadata to merge into a live session.")
class UpdateSessionInput(SessionKeyInput):
    metadata: JSON = strawberry.field(
        description="Merged into the stored metadata (" + MERGE + "); {}: unchanged."
    )


@strawberry.input(
    description=(
        "A session to create, or to merge into (a soft-deleted one is revived and merged into"
        " its old metadata; the memories its deletion took stay deleted)."
    )
)
class UpsertSessionInput(SessionInput): ...


# Memories


@strawberry.input(description="A new memory.")
class MemoryInput:
    uuid: str | None = strawberry.field(
        default=UNSET,
        description=(
            "The memory's id in its project (1 to MEMVAULT_MAX_ID_LENGTH (256) characters);"
            " give one to make retries safe. Already stored in this session: nothing is"
            " stored and the stored memory is answered; stored in another session: CONFLICT;"
            " deleted: neither stored nor answered. Omitted: a new one is generated."
        ),
    )
    role: str | None = strawberry.field(
        default=UNSET,
        description=(
            "Free-form name of who wrote it; at most MEMVAULT_MAX_ID_LENGTH (256) characters."
        ),
    )
    role_type: RoleType = strawberry.field(description="Which kind of author wrote it.")
    content: str = strawberry.field(
        description="The text: 1 character to MEMVAULT_MAX_CONTENT_BYTES (262144) bytes of UTF-8."
    )
    metadata: JSON | None = strawberry.field(default=UNSET, description="Metadata; omitted: {}.")
    token_count: int | None = strawberry.field(
        default=UNSET, description="Token count of the content, if known; 0 or more."
    )
    created_at: datetime | None = strawberry.field(
        default=UNSET,
        description="When it was written; omitted: the server's clock. Does not affect seq.",
    )


@strawberry.input(description="Memories to append to a session.")
class AddMemoriesInput:
    session_id: str = strawberry.field(
        description=SESSION_ID[:-1] + ". Created when missing, revived (empty) when deleted."
    )
    user_id: str | None = strawberry.field(
        default=UNSET,
        description=(
            "The id of a live user (NOT_FOUND when there is none): attaches the session to"
            " them when it has no user; CONFLICT when it has another."
        ),
    )
    memories: list[MemoryInput] = strawberry.field(
        description=(
            "1 to MEMVAULT_MAX_MEMORIES_PER_CALL (1000) memories, stored in this order"
            " (increasing seq); no uuid twice. All are checked before anything is written."
        )
    )


@strawberry.input(description="Changes to a live memory.")
class UpdateMemoryInput:
    uuid: str = strawberry.field(description="The memory's uuid.")
    content: str | None = strawberry.field(
        default=UNSET,
        description=(
            "New text: 1 character to MEMVAULT_MAX_CONTENT_BYTES (262144) bytes of UTF-8;"
            " omitted or null: unchanged."
        ),
    )
    metadata: JSON | None = strawberry.field(
        default=UNSET,
        description="Merged into the stored metadata ("
        + MERGE
        + "); omitted, null or {}: unchanged.",
    )


# Filters


def _created_after() -> Any:
    return strawberry.field(
        default=UNSET, description="Only those created strictly after this instant."
    )


def _created_before() -> Any:
    return strawberry.field(
        default=UNSET, description="Only those created strictly before this instant."
    )


def _metadata_equal() -> Any:
    return strawberry.field(
        default=UNSET,
        description=(
            "Only those whose metadata has each of these top-level keys equal to the given"
            " string, number or boolean."
        ),
    )


@strawberry.input(description="Which users to list; every given condition must hold.")
class UserFilter:
    created_after: datetime | None = _created_after()
    created_before: datetime | None = _created_before()
    metadata: JSON | None = _metadata_equal()


@strawberry.input(description="Which sessions to list; every given condition must hold.")
class SessionFilter:
    user_id: str | None = strawberry.field(
        default=UNSET, description="Only the sessions of the user with this id."
    )
    created_after: datetime | None = _created_after()
    created_before: datetime | None = _created_before()
    metadata: JSON | None = _metadata_equal()
