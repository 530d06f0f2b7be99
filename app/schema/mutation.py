"""Mutation root: each mutation names its repository call and its result; ``write`` checks the
arguments, makes the call and keeps what the request reads afterwards fresh."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import strawberry

from memvault.db import memories as memory_repo
from memvault.db import sessions as session_repo
from memvault.db import users as user_repo
from memvault.db.memories import Appended, NewMemory
from memvault.schema.context import Info
from memvault.schema.inputs import (
    AddMemoriesInput,
    CreateSessionInput,
    CreateUserInput,
    MemoryInput,
    SessionIdArgument,
    SessionInput,
    UpdateMemoryInput,
    UpdateSessionInput,
    UpdateUserInput,
    UpsertSessionInput,
    UpsertUserInput,
    UserIdArgument,
    UserInput,
    UuidArgument,
)
from memvault.schema.permissions import CanWrite, IsAdmin
from memvault.schema.types import Memory, Session, User, datetime_to_ms
from memvault.validation import (
    check_content,
    check_count,
    check_distinct,
    check_email,
    check_id,
    check_metadata,
    check_optional_text,
    metadata_patch,
)

if TYPE_CHECKING:
    from strawberry.permission import BasePermission

    from memvault.config import Settings
    from memvault.db.merge import MetadataPatch
    from memvault.db.records import Database

T = TypeVar("T")
UNSET = strawberry.UNSET


@strawberry.type(description="The session written to, and the memories of the call in input order.")
class AddMemoriesPayload:
    session: Session = strawberry.field(
        description="The session after the call (its memoryCount includes the new memories)."
    )
    memories: list[Memory] = strawberry.field(
        description=(
            "The call's memories in input order: each stored one, or for a uuid already stored"
            " in the session the stored memory (first write wins); a deleted uuid is left out."
        )
    )


@strawberry.type(description="The answer of a delete.")
class DeletePayload:
    deleted: bool = strawberry.field(
        description="Always true: a delete that finds nothing answers NOT_FOUND instead."
    )


def _optional_id(value: Any, settings: Settings, *, field: str) -> str | None:
    """The id, or None when omitted or null (which only an optional id can be)."""
    if value is UNSET or value is None:
        return None
    return check_id(value, field=field, settings=settings)


def _user_fields(data: UserInput, settings: Settings) -> dict[str, Any]:
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


def _patch(value: Any, settings: Settings) -> MetadataPatch | None:
    """A metadata patch for a stored object (its merged result is checked too), or None when
    it changes nothing."""
    return None if value is UNSET else metadata_patch(value, field="metadata", settings=settings)


def _content(value: Any, settings: Settings) -> str | None:
    """A memory's new content, or None when omitted or null (unchanged)."""
    if value is UNSET or value is None:
        return None
    return check_content(value, field="content", settings=settings)


def _metadata(value: Any, settings: Settings, *, field: str) -> dict[str, Any] | None:
    """A new memory's metadata (a patch applied to nothing), or None when omitted or null."""
    if value is UNSET or value is None:
        return None
    return check_metadata(value, field=field, settings=settings)


def _new_memories(items: list[MemoryInput], settings: Settings) -> list[NewMemory]:
    """The memories of an ``addMemories`` call, checked; errors name ``memories[i]``."""
    check_count(len(items), field="memories", low=1, high=settings.max_memories_per_call)
    new = [
        NewMemory(
            role_type=cast("str", item.role_type.value),  # (typed as its enum_value)
            content=check_content(item.content, field=f"memories[{i}].content", settings=settings),
            uuid=_optional_id(item.uuid, settings, field=f"memories[{i}].uuid"),
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
        for i, item in enumerate(items)
    ]
    for i, memory in enumerate(new):
        if memory.token_count is not None and memory.token_count < 0:
            check_count(
                memory.token_count, field=f"memories[{i}].tokenCount", low=0, high=2**31 - 1
            )
    return new


CHECKS: dict[str, Callable[[Any, Settings], Any]] = {
    "user_id": partial(_optional_id, field="userId"),
    "session_id": partial(_optional_id, field="sessionId"),
    "uuid": partial(_optional_id, field="uuid"),
    "fields": _user_fields,
    "metadata": _patch,
    "content": _content,
    "memories": _new_memories,
}
"""How :func:`write` checks a repository argument, by its name; errors name the API's field."""


def mutation(description: str, *, scope: type[BasePermission] = CanWrite) -> Any:
    """A mutation field; the caller's key needs ``scope`` (write, or ``IsAdmin``)."""
    return strawberry.mutation(permission_classes=[scope], description=description)


async def write(info: Info, call: Callable[..., Awaitable[T]], /, **given: Any) -> T:
    """The repository ``call`` in the request's database and project, with each argument
    checked first (by :data:`CHECKS`, in the order given). Then the request's cached reads are
    dropped, so what the mutation returns is read fresh. Errors are mapped to codes by
    ``errors.py``, like every other."""
    ctx = info.context
    arguments = {name: CHECKS[name](value, ctx.settings) for name, value in given.items()}
    result = await call(ctx.db, project_id=ctx.project_id, **arguments)
    ctx.loaders.forget()
    return result


def _user(data: UserInput) -> dict[str, Any]:
    """A user input as the arguments of :func:`write`."""
    return {"user_id": data.user_id, "fields": data, "metadata": data.metadata}


async def _add_memories(db: Database, *, memories: list[NewMemory], **given: Any) -> Appended:
    """``add_memories``, once no two of the memories share a uuid (the last input check)."""
    check_distinct([memory.uuid for memory in memories], field="memories", item="uuid")
    return await memory_repo.add_memories(db, memories=memories, **given)


def _session(data: SessionInput) -> dict[str, Any]:
    """A session input as the arguments of :func:`write`."""
    return {"session_id": data.session_id, "user_id": data.user_id, "metadata": data.metadata}


@strawberry.type(
    description=(
        "Writes. Each needs a key with scope write (forgetUser: admin), else FORBIDDEN. Input"
        " is checked before anything is written; invalid input is BAD_USER_INPUT naming the"
        " field (extensions.field). The mutations of one document run one after another, each"
        " on its own (no transaction). CONFLICT from too many concurrent writers of one item:"
        " retry."
    )
)
class Mutation:
    @mutation(
        "Create a user; ALREADY_EXISTS when a live user has the id (a soft-deleted id starts a"
        " fresh user)."
    )
    async def create_user(
        self,
        info: Info,
        input: Annotated[CreateUserInput, strawberry.argument(description="The user.")],
    ) -> User:
        return User.from_doc(await write(info, user_repo.create_user, **_user(input)))

    @mutation(
        "Create a user, or set the given fields and merge metadata (reviving a soft-deleted"
        " user). Idempotent."
    )
    async def upsert_user(
        self,
        info: Info,
        input: Annotated[
            UpsertUserInput, strawberry.argument(description="The user and what to set.")
        ],
    ) -> User:
        return User.from_doc(await write(info, user_repo.upsert_user, **_user(input)))

    @mutation(
        "Set the given fields (null clears) and merge metadata of a live user; NOT_FOUND when"
        " missing or deleted. Idempotent."
    )
    async def update_user(
        self,
        info: Info,
        input: Annotated[
            UpdateUserInput, strawberry.argument(description="The user and what to set.")
        ],
    ) -> User:
        return User.from_doc(await write(info, user_repo.update_user, **_user(input)))

    @mutation(
        "Soft-delete a live user with their sessions and memories: invisible to every read"
        " from then on; NOT_FOUND when missing or deleted."
    )
    async def delete_user(self, info: Info, user_id: UserIdArgument) -> DeletePayload:
        await write(info, user_repo.delete_user, user_id=user_id)
        return DeletePayload(deleted=True)

    @mutation(
        "Erase a user and everything of theirs, now and for good, soft-deleted or not (needs an"
        " admin key); NOT_FOUND only when nothing of the user exists.",
        scope=IsAdmin,
    )
    async def forget_user(self, info: Info, user_id: UserIdArgument) -> DeletePayload:
        await write(info, user_repo.forget_user, user_id=user_id)
        return DeletePayload(deleted=True)

    @mutation(
        "Create a session; ALREADY_EXISTS when a live one has the id (a soft-deleted id starts"
        " a fresh session), NOT_FOUND when userId is not a live user."
    )
    async def create_session(
        self,
        info: Info,
        input: Annotated[CreateSessionInput, strawberry.argument(description="The session.")],
    ) -> Session:
        return Session.from_doc(await write(info, session_repo.create_session, **_session(input)))

    @mutation(
        "Create a session, or merge into it (reviving a deleted one); NOT_FOUND when userId is"
        " not a live user, CONFLICT when the session has another user (or, reviving it, its"
        " user is deleted)."
        " Idempotent."
    )
    async def upsert_session(
        self,
        info: Info,
        input: Annotated[
            UpsertSessionInput, strawberry.argument(description="The session and what to merge.")
        ],
    ) -> Session:
        upsert = partial(session_repo.ensure_session, merge=True)
        return Session.from_doc(await write(info, upsert, **_session(input)))

    @mutation("Merge metadata into a live session; NOT_FOUND when missing or deleted. Idempotent.")
    async def update_session(
        self,
        info: Info,
        input: Annotated[
            UpdateSessionInput, strawberry.argument(description="The session and what to merge.")
        ],
    ) -> Session:
        update = session_repo.update_session
        return Session.from_doc(
            await write(info, update, session_id=input.session_id, metadata=input.metadata)
        )

    @mutation(
        "Soft-delete a live session and its live memories (restoreSession undoes it);"
        " NOT_FOUND when missing or deleted."
    )
    async def delete_session(self, info: Info, session_id: SessionIdArgument) -> DeletePayload:
        await write(info, session_repo.delete_session, session_id=session_id)
        return DeletePayload(deleted=True)

    @mutation(
        "Undelete a session and exactly the memories its deletion took (not those deleted on"
        " their own); a live session is answered as it is. NOT_FOUND when it never existed or"
        " was erased, CONFLICT when its user is deleted."
    )
    async def restore_session(self, info: Info, session_id: SessionIdArgument) -> Session:
        return Session.from_doc(
            await write(info, session_repo.restore_session, session_id=session_id)
        )

    @mutation(
        "Append memories to a session in the given order (creating the session when missing);"
        " idempotent by uuid: a retry with the same uuids stores each memory once. All or"
        " nothing on invalid input: BAD_USER_INPUT (also a uuid twice in the call), NOT_FOUND"
        " (userId not a live user), CONFLICT (a uuid stored in another session, or the session"
        " has another user)."
    )
    async def add_memories(
        self,
        info: Info,
        input: Annotated[
            AddMemoriesInput, strawberry.argument(description="The session and its new memories.")
        ],
    ) -> AddMemoriesPayload:
        appended = await write(
            info,
            _add_memories,
            memories=input.memories,  # checked before the session's id, as ever
            session_id=input.session_id,
            user_id=input.user_id,
        )
        return AddMemoriesPayload(
            session=Session.from_doc(appended.session),
            memories=[Memory.from_doc(doc) for doc in appended.memories],
        )

    @mutation(
        "Change content and/or merge metadata of a live memory; NOT_FOUND when missing or"
        " deleted. seq and createdAt stay."
    )
    async def update_memory(
        self,
        info: Info,
        input: Annotated[
            UpdateMemoryInput, strawberry.argument(description="The memory and what to change.")
        ],
    ) -> Memory:
        doc = await write(
            info,
            memory_repo.update_memory,
            uuid=input.uuid,
            content=input.content,
            metadata=input.metadata,
        )
        return Memory.from_doc(doc)

    @mutation(
        "Soft-delete one live memory (restoreSession does not bring it back); NOT_FOUND when"
        " missing or deleted."
    )
    async def delete_memory(self, info: Info, uuid: UuidArgument) -> DeletePayload:
        await write(info, memory_repo.delete_memory, uuid=uuid)
        return DeletePayload(deleted=True)
