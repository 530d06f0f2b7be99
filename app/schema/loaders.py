"""Per-request DataLoaders: every nested field is one batched command per query level."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from strawberry.dataloader import DataLoader

from memvault.db import memories, sessions, users

if TYPE_CHECKING:
    from memvault.db.memories import Fields
    from memvault.db.queries import Window
    from memvault.db.records import Database

WindowKey = tuple[str, "Window", "Fields"]
"""(parent id, keyset window, stored fields to fetch)."""
K = TypeVar("K")
V = TypeVar("V")
M = TypeVar("M")
Batch = Callable[["Database", str], Callable[[list[K]], Awaitable[list[V]]]]
"""How a loader answers its batches, given the request's database and project."""


Read = Callable[[], Callable[..., Awaitable[V]]]
"""The repository function a loader reads with, looked up when a batch runs (so that it can be
replaced: tests make reads fail or stall that way)."""


def by_key(read: Read[Mapping[str, V]], keys: str, *, missing: M) -> Batch[str, V | M]:
    """Ids batched into one ``read`` (as its argument ``keys``), answered in key order;
    ``missing`` for an id it did not find."""

    def batch(db: Database, project_id: str) -> Callable[[list[str]], Awaitable[list[V | M]]]:
        async def load(ids: list[str]) -> list[V | M]:
            found = await read()(db, project_id=project_id, **{keys: ids})
            return [found.get(key, missing) for key in ids]

        return load

    return batch


def by_window(
    read: Read[Mapping[str, Sequence[V]]], keys: str, *, fields: bool
) -> Batch[WindowKey, Sequence[V]]:
    """(parent, window, fields) keys batched into one ``read`` per distinct window and fields
    (the parents as its argument ``keys``; the fields too when it takes ``fields``), answered
    in key order."""

    def batch(
        db: Database, project_id: str
    ) -> Callable[[list[WindowKey]], Awaitable[list[Sequence[V]]]]:
        async def load(batch: list[WindowKey]) -> list[Sequence[V]]:
            parents_by_read: dict[tuple[Window, Fields], list[str]] = defaultdict(list)
            for parent, window, selected in batch:
                parents_by_read[(window, selected)].append(parent)
            found: dict[WindowKey, Sequence[V]] = {}
            for (window, selected), parents in parents_by_read.items():
                given: dict[str, Any] = {keys: parents, "window": window}
                if fields:
                    given["fields"] = selected
                rows = await read()(db, project_id=project_id, **given)
                for parent in parents:
                    found[(parent, window, selected)] = rows[parent]
            return [found[key] for key in batch]

        return load

    return batch


class Loader(Generic[K, V]):
    """A loader of :class:`DataLoaders`: made on first use in a request, from its database and
    project, then kept in the instance (as ``functools.cached_property`` keeps a value)."""

    def __init__(self, batch: Batch[K, V]) -> None:
        self.batch = batch
        self.name = ""

    def __set_name__(self, owner: type[DataLoaders], name: str) -> None:
        self.name = name

    def __get__(self, loaders: DataLoaders, owner: type[DataLoaders]) -> DataLoader[K, V]:
        made = DataLoader(self.batch(loaders.db, loaders.project_id))
        loaders.__dict__[self.name] = made
        return made


class DataLoaders:
    """Fresh for every request and bound to its project; each loader is built on first use."""

    def __init__(self, *, db: Database, project_id: str) -> None:
        self.db = db
        self.project_id = project_id

    user = Loader(by_key(lambda: users.get_users, "user_ids", missing=None))
    session = Loader(by_key(lambda: sessions.get_sessions, "session_ids", missing=None))
    memory = Loader(by_key(lambda: memories.get_memories, "uuids", missing=None))
    session_count_of_user = Loader(
        by_key(lambda: sessions.count_sessions_of_users, "user_ids", missing=0)
    )
    sessions_of_user = Loader(
        by_window(lambda: sessions.list_sessions_of_users, "user_ids", fields=False)
    )
    memories_of_session = Loader(
        by_window(lambda: memories.list_memories_of_sessions, "session_ids", fields=True)
    )

    def forget(self) -> None:
        """Drop cached rows after a mutation, so what it returns is read fresh."""
        for name in LOADERS:
            loader: DataLoader[object, object] | None = self.__dict__.get(name)
            if loader is not None:
                loader.clear_all()


LOADERS = tuple(name for name, value in vars(DataLoaders).items() if isinstance(value, Loader))
"""The names of the loaders, each built on first use."""
