"""Per-request DataLoaders: every nested field is one batched command per query level."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

from strawberry.dataloader import DataLoader

from memvault.db import memories, sessions, users

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.db.documents import Doc, Window
    from memvault.schema.lookahead import Fields

WindowKey = tuple[str, "Window", "Fields"]
"""(parent id, keyset window, stored fields to fetch)."""
T = TypeVar("T")


def _by_window(
    fetch: Callable[[Sequence[str], Window, Fields], Awaitable[dict[str, list[Doc]]]],
) -> Callable[[list[WindowKey]], Awaitable[list[list[Doc]]]]:
    """Batch window keys: one fetch per distinct (window, fields), results in key order."""

    async def load(keys: list[WindowKey]) -> list[list[Doc]]:
        parents_by_read: dict[tuple[Window, Fields], list[str]] = defaultdict(list)
        for parent, window, fields in keys:
            parents_by_read[(window, fields)].append(parent)
        found: dict[WindowKey, list[Doc]] = {}
        for (window, fields), parents in parents_by_read.items():
            rows = await fetch(parents, window, fields)
            for parent in parents:
                found[(parent, window, fields)] = rows[parent]
        return [found[key] for key in keys]

    return load


def _in_key_order(
    fetch: Callable[[Sequence[str]], Awaitable[dict[str, T]]], missing: T
) -> Callable[[list[str]], Awaitable[list[T]]]:
    async def load(keys: list[str]) -> list[T]:
        found = await fetch(keys)
        return [found.get(key, missing) for key in keys]

    return load


class DataLoaders:
    """Fresh for every request and bound to its project; each loader is built on first use."""

    def __init__(self, *, db: AsyncDatabase[Doc], project_id: str) -> None:
        self.db = db
        self.project_id = project_id

    @cached_property
    def user(self) -> DataLoader[str, Doc | None]:
        db, project = self.db, self.project_id

        async def user_docs(ids: Sequence[str]) -> dict[str, Doc | None]:
            return dict(await users.get_users(db, project_id=project, user_ids=ids))

        return DataLoader(_in_key_order(user_docs, None))

    @cached_property
    def session(self) -> DataLoader[str, Doc | None]:
        db, project = self.db, self.project_id

        async def session_docs(ids: Sequence[str]) -> dict[str, Doc | None]:
            return dict(await sessions.get_sessions(db, project_id=project, session_ids=ids))

        return DataLoader(_in_key_order(session_docs, None))

    @cached_property
    def memory(self) -> DataLoader[str, Doc | None]:
        db, project = self.db, self.project_id

        async def memory_docs(ids: Sequence[str]) -> dict[str, Doc | None]:
            return dict(await memories.get_memories(db, project_id=project, uuids=ids))

        return DataLoader(_in_key_order(memory_docs, None))

    @cached_property
    def session_count_of_user(self) -> DataLoader[str, int]:
        db, project = self.db, self.project_id

        async def session_counts(ids: Sequence[str]) -> dict[str, int]:
            return await sessions.count_sessions_of_users(db, project_id=project, user_ids=ids)

        return DataLoader(_in_key_order(session_counts, 0))

    @cached_property
    def sessions_of_user(self) -> DataLoader[WindowKey, list[Doc]]:
        db, project = self.db, self.project_id

        async def sessions_window(
            ids: Sequence[str], window: Window, fields: Fields
        ) -> dict[str, list[Doc]]:
            return await sessions.list_sessions_of_users(
                db, project_id=project, user_ids=ids, window=window
            )

        return DataLoader(_by_window(sessions_window))

    @cached_property
    def memories_of_session(self) -> DataLoader[WindowKey, list[Doc]]:
        db, project = self.db, self.project_id

        async def memories_window(
            ids: Sequence[str], window: Window, fields: Fields
        ) -> dict[str, list[Doc]]:
            return await memories.list_memories_of_sessions(
                db, project_id=project, session_ids=ids, window=window, fields=fields
            )

        return DataLoader(_by_window(memories_window))

    def forget(self) -> None:
        """Drop cached rows after a mutation, so what it returns is read fresh."""
        for name in LOADERS:
            loader: DataLoader[object, object] | None = self.__dict__.get(name)
            if loader is not None:
                loader.clear_all()


LOADERS = tuple(
    name for name, value in vars(DataLoaders).items() if isinstance(value, cached_property)
)
"""The names of the loaders, each built on first use."""
