"""The shared read helpers of ``app/db/queries.py``, over the wire."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from memvault.db.engine import connect
from memvault.db.queries import aggregate_bounded
from tests.support.commands import CommandCounter

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

ROWS = [{"k": "a", "n": n} for n in range(7)]
PIPELINE = [{"$match": {"k": "a"}}, {"$sort": {"n": -1}}, {"$project": {"_id": 0, "k": 1, "n": 1}}]


@pytest.mark.parametrize(
    ("most", "commands"),
    [(7, ["aggregate"]), (50, ["aggregate"]), (2, ["aggregate", "getMore", "getMore"])],
)
async def test_aggregate_bounded_reads_every_row(
    mongo_uri: str, db: AsyncDatabase[dict[str, Any]], most: int, commands: list[str]
) -> None:
    """One command when ``most`` bounds the answer; ``getMore`` in the same session otherwise
    (as when rows pass MongoDB's 16 MiB per batch)."""
    await db.rows.insert_many([dict(row) for row in ROWS])
    counter = CommandCounter()
    client = connect(mongo_uri, event_listeners=[counter])
    try:
        rows = await aggregate_bounded(client[db.name].rows, PIPELINE, most=most)
    finally:
        await client.close()
    assert rows == sorted(ROWS, key=lambda row: -row["n"])
    assert counter.commands == commands
