"""Mutation root: thin resolvers that check input and call the repositories."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import strawberry

from memvault.db import memories as memory_repo
from memvault.db import sessions as session_repo
from memvault.db import users as user_repo
from memvault.db.memories import NewMemory
from memvault.schema.context import Info
from memvault.schema.inputs import (
    AddMemoriesInput,
    CreateSessionInput,
    CreateUserInput,
    UpdateMemoryInput,
    UpdateSessionInput,
    UpdateUserInput,
    UpsertSessionInput,
    UpsertUserInput,
)
from memvault.schema.permissions import CanWrite, IsAdmin
from memvault.schema.types import Memory, Session, User, datetime_to_ms
from memvault.validation import (
    check_content,
    check_count,
    check_email,
    check_id,
    check_metadata,
    check_optional_text,
    metadata_patch,
)

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.config import Settings
    from memvault.db.documents import Doc
    from memvault.db.merge import MetadataPatch
    from memvault.schema.context import Context

UNSET = strawberry.UNSET


@strawberry.type(description="The session written to, and the memories of the call in input order.")
class AddMemoriesPayload:
    session: Session
    memories: list[Memory]


@strawberry.type
class DeletePayload:
    deleted: bool


def _metadata(value: Any, settings: Settings, *, field: str = "metadata") -> dict[str, Any] | None:
    """A new memory's metadata (a patch applied to nothing), or None when omitted or null."""
    if value is UNSET or value is None:
        return None
    return check_metadata(value, field=field, settings=settings)


def _patch(value: Any, settings: Settings) -> MetadataPatch | None:
    """A metadata patch for a stored object (its merged result is checked too), or None when
    it changes nothing."""
    return None if value is UNSET else metadata_patch(value, field="metadata", settings=settings)


def _user_fields(
    data: CreateUserInput | UpsertUserInput | UpdateUserInput, settings: Settings
) -> dict[str, Any]:
    """The given profile fields by stored name; omitted ones are left out, null clears."""
    fields: dict[str, Any] = {}
    if data.email is not UNSET:
        fields["email"] = check_email(data.email, settings=settings)
    if data.first_name is not UNSET:
        fields["first_name"] = check_optional_text(
            data.first_name, field="firstName", settings=settings
        )
    if data.last_name is not UNSET:
        fields["last_name"] = check_optional_text(
            data.last_name, field="lastName", settings=settings
        )
    return fields


def _optional_id(value: Any, settings: Settings, field: str) -> str | None:
    return (
        None if value is UNSET or value is None else check_id(value, field=field, settings=settings)
    )


def _done(ctx: Context) -> None:
    ctx.loaders.forget()


class UserWrite(Protocol):
    async def __call__(
        self,
        db: AsyncDatabase[Doc],
        *,
        project_id: str,
        user_id: str,
        fields: Mapping[str, Any],
        metadata: MetadataPatch | None,
    ) -> Doc: ...


async def _write_user(
    ctx: Context, data: CreateUserInput | UpsertUserInput | UpdateUserInput, write: UserWrite
) -> User:
    """create/upsert/update: the same checked input, a different repository rule."""
    doc = await write(
        ctx.db,
        project_id=ctx.project_id,
        user_id=check_id(data.user_id, field="userId", settings=ctx.settings),
        fields=_user_fields(data, ctx.settings),
        metadata=_patch(data.metadata, ctx.settings),
    )
    _done(ctx)
    return User.from_doc(doc)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Create a user; ALREADY_EXISTS when a live user has the id.",
    )
    async def create_user(self, info: Info, input: CreateUserInput) -> User:
        return await _write_user(info.context, input, user_repo.create_user)

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Create a user, or set the given fields and merge metadata.",
    )
    async def upsert_user(self, info: Info, input: UpsertUserInput) -> User:
        return await _write_user(info.context, input, user_repo.upsert_user)

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Set the given fields (null clears) and merge metadata.",
    )
    async def update_user(self, info: Info, input: UpdateUserInput) -> User:
        return await _write_user(info.context, input, user_repo.update_user)

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Soft-delete a user with their sessions and memories.",
    )
    async def delete_user(self, info: Info, user_id: str) -> DeletePayload:
        ctx = info.context
        user_id = check_id(user_id, field="userId", settings=ctx.settings)
        await user_repo.delete_user(ctx.db, project_id=ctx.project_id, user_id=user_id)
        _done(ctx)
        return DeletePayload(deleted=True)

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Erase a user and everything of theirs, now and for good.",
    )
    async def forget_user(self, info: Info, user_id: str) -> DeletePayload:
        ctx = info.context
        user_id = check_id(user_id, field="userId", settings=ctx.settings)
        await user_repo.forget_user(ctx.db, project_id=ctx.project_id, user_id=user_id)
        _done(ctx)
        return DeletePayload(deleted=True)

    @strawberry.mutation(
        permission_classes=[CanWrite], description="Create a session; ALREADY_EXISTS when live."
    )
    async def create_session(self, info: Info, input: CreateSessionInput) -> Session:
        ctx = info.context
        doc = await session_repo.create_session(
            ctx.db,
            project_id=ctx.project_id,
            session_id=check_id(input.session_id, field="sessionId", settings=ctx.settings),
            user_id=_optional_id(input.user_id, ctx.settings, "userId"),
            metadata=_patch(input.metadata, ctx.settings),
        )
        _done(ctx)
        return Session.from_doc(doc)

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Create a session, or merge into it (reviving a deleted one).",
    )
    async def upsert_session(self, info: Info, input: UpsertSessionInput) -> Session:
        ctx = info.context
        doc = await session_repo.ensure_session(
            ctx.db,
            project_id=ctx.project_id,
            session_id=check_id(input.session_id, field="sessionId", settings=ctx.settings),
            user_id=_optional_id(input.user_id, ctx.settings, "userId"),
            metadata=_patch(input.metadata, ctx.settings),
            merge=True,
        )
        _done(ctx)
        return Session.from_doc(doc)

    @strawberry.mutation(
        permission_classes=[CanWrite], description="Merge metadata into a live session."
    )
    async def update_session(self, info: Info, input: UpdateSessionInput) -> Session:
        ctx = info.context
        doc = await session_repo.update_session(
            ctx.db,
            project_id=ctx.project_id,
            session_id=check_id(input.session_id, field="sessionId", settings=ctx.settings),
            metadata=_patch(input.metadata, ctx.settings),
        )
        _done(ctx)
        return Session.from_doc(doc)

    @strawberry.mutation(
        permission_classes=[CanWrite], description="Soft-delete a session and its memories."
    )
    async def delete_session(self, info: Info, session_id: str) -> DeletePayload:
        ctx = info.context
        await session_repo.delete_session(
            ctx.db,
            project_id=ctx.project_id,
            session_id=check_id(session_id, field="sessionId", settings=ctx.settings),
        )
        _done(ctx)
        return DeletePayload(deleted=True)

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Undelete a session and the memories its deletion took.",
    )
    async def restore_session(self, info: Info, session_id: str) -> Session:
        ctx = info.context
        doc = await session_repo.restore_session(
            ctx.db,
            project_id=ctx.project_id,
            session_id=check_id(session_id, field="sessionId", settings=ctx.settings),
        )
        _done(ctx)
        return Session.from_doc(doc)

    @strawberry.mutation(
        permission_classes=[CanWrite], description="Append memories in order; idempotent by uuid."
    )
    async def add_memories(self, info: Info, input: AddMemoriesInput) -> AddMemoriesPayload:
        ctx = info.context
        settings = ctx.settings
        check_count(
            len(input.memories), field="memories", low=1, high=settings.max_memories_per_call
        )
        new = [
            NewMemory(
                role_type=item.role_type.value,
                content=check_content(
                    item.content, field=f"memories[{i}].content", settings=settings
                ),
                uuid=_optional_id(item.uuid, settings, f"memories[{i}].uuid"),
                role=check_optional_text(
                    None if item.role is UNSET else item.role,
                    field=f"memories[{i}].role",
                    settings=settings,
                ),
                metadata=_metadata(item.metadata, settings, field=f"memories[{i}].metadata"),
                token_count=None if item.token_count is UNSET else item.token_count,
                created_ms=None
                if item.created_at in (UNSET, None)
                else datetime_to_ms(item.created_at),
            )
            for i, item in enumerate(input.memories)
        ]
        for i, item in enumerate(new):
            if item.token_count is not None and item.token_count < 0:
                check_count(
                    item.token_count, field=f"memories[{i}].tokenCount", low=0, high=2**31 - 1
                )
        appended = await memory_repo.add_memories(
            ctx.db,
            project_id=ctx.project_id,
            session_id=check_id(input.session_id, field="sessionId", settings=settings),
            user_id=_optional_id(input.user_id, settings, "userId"),
            memories=new,
        )
        _done(ctx)
        return AddMemoriesPayload(
            session=Session.from_doc(appended.session),
            memories=[Memory.from_doc(doc) for doc in appended.memories],
        )

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Change content and/or merge metadata of a memory.",
    )
    async def update_memory(self, info: Info, input: UpdateMemoryInput) -> Memory:
        ctx = info.context
        content = None if input.content in (UNSET, None) else input.content
        doc = await memory_repo.update_memory(
            ctx.db,
            project_id=ctx.project_id,
            uuid=check_id(input.uuid, field="uuid", settings=ctx.settings),
            content=check_content(content, field="content", settings=ctx.settings)
            if content is not None
            else None,
            metadata=_patch(input.metadata, ctx.settings),
        )
        _done(ctx)
        return Memory.from_doc(doc)

    @strawberry.mutation(permission_classes=[CanWrite], description="Soft-delete one memory.")
    async def delete_memory(self, info: Info, uuid: str) -> DeletePayload:
        ctx = info.context
        await memory_repo.delete_memory(
            ctx.db,
            project_id=ctx.project_id,
            uuid=check_id(uuid, field="uuid", settings=ctx.settings),
        )
        _done(ctx)
        return DeletePayload(deleted=True)
