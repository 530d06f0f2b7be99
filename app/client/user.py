"""``client.user``: users, with Zep's method names (the classes are thin ``transport.Shell``s)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memvault.client import operations as ops
from memvault.client.models import CreateUserRequest, UpdateUserRequest
from memvault.client.transport import AsyncTransport, Shell, SyncTransport

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Iterator, Mapping

    from memvault.client.models import Session, User, UserPage


class UserClient(Shell[SyncTransport]):
    """Users (sync)."""

    def add(
        self,
        request: CreateUserRequest | None = None,
        *,
        user_id: str | None = None,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> User:
        """Create a user from a ``CreateUserRequest`` or keyword arguments
        (``AlreadyExistsError`` when a live user has the id). Not retried once it may have
        reached the server."""
        new = ops.user_request_arg(
            request,
            CreateUserRequest,
            user_id=user_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            metadata=metadata,
        )
        return self._transport.run(ops.create_user(new))

    def get(self, user_id: str) -> User:
        """A live user (``NotFoundError`` otherwise)."""
        return self._transport.run(ops.get_user(user_id))

    def update(
        self,
        request: UpdateUserRequest | str | None = None,
        *,
        user_id: str | None = None,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> User:
        """Change a live user from an ``UpdateUserRequest``, or a user id and keyword arguments:
        fields left ``None`` are unchanged, ``metadata`` is merged."""
        change = ops.user_request_arg(
            request,
            UpdateUserRequest,
            user_id=user_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            metadata=metadata,
        )
        return self._transport.run(ops.update_user(change))

    def delete(self, user_id: str) -> None:
        """Soft-delete a user with their sessions and messages (``NotFoundError`` when there is
        no live one). Not retried once it may have reached the server."""
        self._transport.run(ops.delete_user(user_id))

    def get_sessions(self, user_id: str) -> builtins.list[Session]:
        """Every live session of a user, oldest first (``NotFoundError`` for no such user)."""
        return self._transport.run(ops.user_sessions(user_id, self._page_size))

    def list(self, limit: int | None = None, cursor: str | None = None) -> UserPage:
        """Up to ``limit`` users (default 100), oldest first, after ``cursor`` (a page's
        ``next_cursor``). The page is a list of users with the next cursor."""
        return self._transport.run(ops.list_users(limit, cursor, self._page_size))

    def list_chunked(self, chunk_size: int = 100) -> Iterator[builtins.list[User]]:
        """Every user, in chunks of up to ``chunk_size``, oldest first, by keyset cursors."""
        ops.limit_arg(chunk_size, "chunk_size")
        return self._transport.chunks(
            lambda cursor: ops.list_users(chunk_size, cursor, self._page_size)
        )


class AsyncUserClient(Shell[AsyncTransport]):
    """Users (async): ``UserClient``'s methods, awaitable, with ``a``-prefixed aliases."""

    async def add(
        self,
        request: CreateUserRequest | None = None,
        *,
        user_id: str | None = None,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> User:
        """See ``UserClient.add``."""
        new = ops.user_request_arg(
            request,
            CreateUserRequest,
            user_id=user_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            metadata=metadata,
        )
        return await self._transport.run(ops.create_user(new))

    async def get(self, user_id: str) -> User:
        """See ``UserClient.get``."""
        return await self._transport.run(ops.get_user(user_id))

    async def update(
        self,
        request: UpdateUserRequest | str | None = None,
        *,
        user_id: str | None = None,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> User:
        """See ``UserClient.update``."""
        change = ops.user_request_arg(
            request,
            UpdateUserRequest,
            user_id=user_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            metadata=metadata,
        )
        return await self._transport.run(ops.update_user(change))

    async def delete(self, user_id: str) -> None:
        """See ``UserClient.delete``."""
        await self._transport.run(ops.delete_user(user_id))

    async def get_sessions(self, user_id: str) -> builtins.list[Session]:
        """See ``UserClient.get_sessions``."""
        return await self._transport.run(ops.user_sessions(user_id, self._page_size))

    async def list(self, limit: int | None = None, cursor: str | None = None) -> UserPage:
        """See ``UserClient.list``."""
        return await self._transport.run(ops.list_users(limit, cursor, self._page_size))

    def list_chunked(self, chunk_size: int = 100) -> AsyncIterator[builtins.list[User]]:
        """See ``UserClient.list_chunked``; use with ``async for``."""
        ops.limit_arg(chunk_size, "chunk_size")
        return self._transport.chunks(
            lambda cursor: ops.list_users(chunk_size, cursor, self._page_size)
        )

    # Zep's older SDK: async methods with an ``a`` prefix.
    aadd = add
    aget = get
    aupdate = update
    adelete = delete
    aget_sessions = get_sessions
    alist = list
    alist_chunked = list_chunked
