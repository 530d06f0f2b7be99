"""The closed set of batched reads the data layer sends, and their warm-up.

The embedded engine turns each aggregate into one SQL statement whose values are parameters, and
compiles each distinct statement once: the first run of a new one cost up to seconds of its CPU
(a 100-branch union 0.3-0.8 s, a 300-branch one 4.4 s), during which every other command on the
database waited; repeats cost milliseconds. What makes a statement distinct is the pipeline's
shape: its stages and fields, the projection, the sort direction and how many branches a union
has. Those are kept few (``MEMORY_SHAPES`` for memory projections, ``UNION_SIZES`` for union
branches), and :func:`warm_up` runs each of them once, with keys that match nothing, so requests
after a start do not pay for the compiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memvault.db import memories, sessions, users
from memvault.db.queries import NO_KEY, UNION_SIZES, Window, find_by_keys

if TYPE_CHECKING:
    from collections.abc import Sequence

    from memvault.db.records import Database

WARM_PROJECT = NO_KEY
"""The project of the warm-up's reads: ids refuse control characters, so none exists."""


async def warm_up(db: Database, *, sizes: Sequence[int] = UNION_SIZES) -> int:
    """Run every batched read shape of these union sizes once, and a session's recent window
    (they find nothing); return how many commands ran.

    The windows of nested connections are warmed without cursor bounds (``first``/``last``
    alone), the form of every batch of more than one parent in practice; a batch with a cursor
    is still one of a closed set of shapes, compiled on its first use.
    """
    project = WARM_PROJECT
    sent = 0
    for descending in (False, True):
        window = Window(descending=descending, limit=1)
        for fields in memories.MEMORY_SHAPES:
            await memories.session_with_memories(
                db, project_id=project, session_id=NO_KEY, window=window, fields=fields
            )
            sent += 1
        for size in sizes:
            ids = [f"{NO_KEY}{n}" for n in range(size)]
            for fields in memories.MEMORY_SHAPES:
                await memories.list_memories_of_sessions(
                    db, project_id=project, session_ids=ids, window=window, fields=fields
                )
            await sessions.list_sessions_of_users(
                db, project_id=project, user_ids=ids, window=window
            )
            sent += len(memories.MEMORY_SHAPES) + 1
    for size in sizes:
        ids = [f"{NO_KEY}{n}" for n in range(size)]
        await users.get_users(db, project_id=project, user_ids=ids)
        await sessions.get_sessions(db, project_id=project, session_ids=ids)
        await memories.get_memories(db, project_id=project, uuids=ids)
        # add_memories' lookup of the uuids it is given (deleted memories too)
        await find_by_keys(db["memories"], match={"project_id": project}, field="uuid", values=ids)
        sent += 4
    return sent
