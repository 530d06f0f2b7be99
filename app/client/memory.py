"""``client.memory``: sessions and their messages, with Zep's method names (the classes are
thin ``transport.Shell``s)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memvault.client import operations as ops
from memvault.client.transport import AsyncTransport, Shell, SyncTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator, Mapping

    from memvault.client.models import Memory, MemorySearchResult, Message, Session, SessionPage


class MemoryClient(Shell[SyncTransport]):
    """Sessions and messages (sync)."""

    def add_session(
        self,
        session: Session | None = None,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Create a session (``AlreadyExistsError`` when a live one has the id; ``NotFoundError``
        when ``user_id`` names no user). Not retried once it may have reached the server."""
        new = ops.session_arg(session, session_id=session_id, user_id=user_id, metadata=metadata)
        return self._transport.run(ops.create_session(new))

    def get_session(self, session_id: str) -> Session:
        """A live session (``NotFoundError`` otherwise)."""
        return self._transport.run(ops.get_session(session_id))

    def update_session(
        self,
        session: Session | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
    ) -> Session:
        """Merge ``metadata`` into a live session's (JSON Merge Patch: ``None`` removes a key).
        Takes a ``Session`` (its ``metadata`` is the patch; other fields are not changed) or a
        session id and ``metadata``."""
        key, patch = ops.session_update_arg(session, session_id=session_id, metadata=metadata)
        return self._transport.run(ops.update_session(key, patch))

    def delete(self, session_id: str) -> None:
        """Soft-delete a session and its messages (``NotFoundError`` when there is no live one).
        Not retried once it may have reached the server."""
        self._transport.run(ops.delete_session(session_id))

    delete_memory = delete

    def list_sessions(self, limit: int | None = None, cursor: str | None = None) -> SessionPage:
        """Up to ``limit`` sessions (default 100), oldest first, after ``cursor`` (a page's
        ``next_cursor``). The page is a list of sessions with the next cursor."""
        return self._transport.run(ops.list_sessions(limit, cursor, self._page_size))

    def list_all_sessions(self, chunk_size: int = 100) -> Iterator[list[Session]]:
        """Every session, in chunks of up to ``chunk_size``, oldest first. Keyset cursors: a
        session created meanwhile never makes another one repeat or be skipped."""
        ops.limit_arg(chunk_size, "chunk_size")
        return self._transport.chunks(
            lambda cursor: ops.list_sessions(chunk_size, cursor, self._page_size)
        )

    def add(
        self,
        session_id: str,
        messages: Memory | Iterable[Message | Mapping[str, Any]],
        *,
        user_id: str | None = None,
    ) -> Memory:
        """Append messages in order (the session is created when missing; with ``user_id`` it
        belongs to that user). Messages without a ``uuid`` get one before the first attempt, so
        a retried call stores each message once. Returns the stored messages."""
        batch = ops.messages_arg(messages)
        return self._transport.run(ops.add_messages(session_id, batch, user_id))

    def add_memory(self, session_id: str, memory: Memory) -> Memory:
        """Zep's older name: ``add(session_id, memory)``."""
        return self.add(session_id, memory)

    def get(self, session_id: str, lastn: int | None = None) -> Memory:
        """The last ``lastn`` messages (every message when None), oldest first."""
        return self._transport.run(ops.last_messages(session_id, lastn, self._page_size))

    get_memory = get

    def search(
        self,
        session_id: str | None = None,
        *,
        text: str,
        user_id: str | None = None,
        limit: int | None = None,
    ) -> list[MemorySearchResult]:
        """Up to ``limit`` messages (default 10) matching ``text``, best first (ties: newest
        first), in ``session_id`` and/or of ``user_id`` (the whole project when neither).
        ``text``: words (all must match), "quoted phrases" and -excluded words."""
        return self._transport.run(
            ops.search_memories(
                text,
                session_id=session_id,
                user_id=user_id,
                limit=limit,
                page_size=self._page_size,
            )
        )

    def update_message_metadata(
        self,
        session_id: str,
        uuid: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        message_uuid: str | None = None,
    ) -> Message:
        """Merge ``metadata`` into the metadata of message ``uuid`` of ``session_id``."""
        return self._transport.run(
            ops.update_message_metadata(session_id, uuid or message_uuid or "", metadata or {})
        )


class AsyncMemoryClient(Shell[AsyncTransport]):
    """Sessions and messages (async): ``MemoryClient``'s methods, awaitable, with the
    ``a``-prefixed names of Zep's older SDK as aliases."""

    async def add_session(
        self,
        session: Session | None = None,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """See ``MemoryClient.add_session``."""
        new = ops.session_arg(session, session_id=session_id, user_id=user_id, metadata=metadata)
        return await self._transport.run(ops.create_session(new))

    async def get_session(self, session_id: str) -> Session:
        """See ``MemoryClient.get_session``."""
        return await self._transport.run(ops.get_session(session_id))

    async def update_session(
        self,
        session: Session | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
    ) -> Session:
        """See ``MemoryClient.update_session``."""
        key, patch = ops.session_update_arg(session, session_id=session_id, metadata=metadata)
        return await self._transport.run(ops.update_session(key, patch))

    async def delete(self, session_id: str) -> None:
        """See ``MemoryClient.delete``."""
        await self._transport.run(ops.delete_session(session_id))

    async def list_sessions(
        self, limit: int | None = None, cursor: str | None = None
    ) -> SessionPage:
        """See ``MemoryClient.list_sessions``."""
        return await self._transport.run(ops.list_sessions(limit, cursor, self._page_size))

    def list_all_sessions(self, chunk_size: int = 100) -> AsyncIterator[list[Session]]:
        """See ``MemoryClient.list_all_sessions``; use with ``async for``."""
        ops.limit_arg(chunk_size, "chunk_size")
        return self._transport.chunks(
            lambda cursor: ops.list_sessions(chunk_size, cursor, self._page_size)
        )

    async def add(
        self,
        session_id: str,
        messages: Memory | Iterable[Message | Mapping[str, Any]],
        *,
        user_id: str | None = None,
    ) -> Memory:
        """See ``MemoryClient.add``."""
        batch = ops.messages_arg(messages)
        return await self._transport.run(ops.add_messages(session_id, batch, user_id))

    async def add_memory(self, session_id: str, memory: Memory) -> Memory:
        """Zep's older name: ``add(session_id, memory)``."""
        return await self.add(session_id, memory)

    async def get(self, session_id: str, lastn: int | None = None) -> Memory:
        """See ``MemoryClient.get``."""
        return await self._transport.run(ops.last_messages(session_id, lastn, self._page_size))

    async def search(
        self,
        session_id: str | None = None,
        *,
        text: str,
        user_id: str | None = None,
        limit: int | None = None,
    ) -> list[MemorySearchResult]:
        """See ``MemoryClient.search``."""
        return await self._transport.run(
            ops.search_memories(
                text,
                session_id=session_id,
                user_id=user_id,
                limit=limit,
                page_size=self._page_size,
            )
        )

    async def update_message_metadata(
        self,
        session_id: str,
        uuid: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        message_uuid: str | None = None,
    ) -> Message:
        """See ``MemoryClient.update_message_metadata``."""
        return await self._transport.run(
            ops.update_message_metadata(session_id, uuid or message_uuid or "", metadata or {})
        )

    # Zep's older SDK: async methods with an ``a`` prefix.
    aadd_session = add_session
    aget_session = get_session
    aupdate_session = update_session
    adelete_memory = delete
    delete_memory = delete
    alist_sessions = list_sessions
    alist_all_sessions = list_all_sessions
    aadd_memory = add_memory
    aget_memory = get
    asearch = search
    get_memory = get
