"""The change hub and its feeds (``app/db/live.py``) on the real engine: order across holes,
late arrivals, deletions, re-syncs and the queue limit."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from memvault.db import live
from memvault.db.live import ChangeHub
from memvault.db.memories import seq_key
from memvault.db.records import memory_docs, session_docs
from memvault.errors import NotFound, SubscriberTooSlow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pymongo.asynchronous.database import AsyncDatabase

    Db = AsyncDatabase[dict[str, Any]]

PROJECT = "p"
SESSION = "s"


@pytest.fixture
async def hub(db: Db, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ChangeHub]:
    monkeypatch.setattr(live, "HOLE_GRACE_S", 0.5)
    await session_docs(db).insert_one(
        {"project_id": PROJECT, "session_id": SESSION, "next_seq": 0, "deleted_ms": 0}  # type: ignore[typeddict-item]
    )
    changes = ChangeHub(db, queue_limit=50)
    try:
        yield changes
    finally:
        await changes.stop()


async def store(db: Db, *seqs: int, deleted: bool = False) -> None:
    now = int(time.time() * 1000)
    await memory_docs(db).insert_many(
        [
            {  # type: ignore[typeddict-item]
                "project_id": PROJECT,
                "session_id": SESSION,
                "uuid": f"m{seq}",
                "seq": seq,
                "seq_key": seq_key(PROJECT, SESSION, seq),
                "content": f"c{seq}",
                "deleted_ms": now if deleted else 0,
                "updated_ms": now,
                "version": 1,
            }
            for seq in seqs
        ]
    )


async def take(memories: AsyncIterator[Any], count: int, wait: float = 5.0) -> list[int]:
    """The seqs of a feed's next ``count`` memories."""
    async with asyncio.timeout(wait):
        return [(await anext(memories))["seq"] for _ in range(count)]


async def test_a_hole_is_waited_for_then_filled_in_order(db: Db, hub: ChangeHub) -> None:
    feed = await hub.memories(project_id=PROJECT, session_id=SESSION, after_seq=0)
    iterator = aiter(feed)
    await store(db, 1, 3)  # 2 is being written by a slower writer
    assert (await anext(iterator))["seq"] == 1
    waiting = asyncio.ensure_future(anext(iterator))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # 3 waits for 2
    await store(db, 2)
    assert (await waiting)["seq"] == 2
    assert (await anext(iterator))["seq"] == 3


async def test_a_number_never_stored_is_given_up_and_a_late_arrival_still_comes(
    db: Db, hub: ChangeHub
) -> None:
    feed = aiter(await hub.memories(project_id=PROJECT, session_id=SESSION, after_seq=0))
    await store(db, 1, 3)
    started = time.monotonic()
    assert await take(feed, 2) == [1, 3]
    assert time.monotonic() - started >= 0.4  # the grace, then the hole given up
    await store(db, 2)  # later than the grace: delivered late, once
    assert await take(feed, 1) == [2]
    await store(db, 4)
    assert await take(feed, 1) == [4]


async def test_old_holes_in_stored_memories_cost_no_wait(db: Db, hub: ChangeHub) -> None:
    await store(db, 1, 2, 5, 6)
    await memory_docs(db).update_many({}, {"$set": {"updated_ms": 1}})  # stored long ago
    feed = aiter(await hub.memories(project_id=PROJECT, session_id=SESSION, after_seq=0))
    started = time.monotonic()
    assert await take(feed, 4) == [1, 2, 5, 6]
    assert time.monotonic() - started < 0.4


async def test_deleted_memories_are_skipped_stored_or_live(db: Db, hub: ChangeHub) -> None:
    await store(db, 1)
    await store(db, 2, deleted=True)
    feed = aiter(await hub.memories(project_id=PROJECT, session_id=SESSION, after_seq=0))
    await store(db, 3)
    await memory_docs(db).update_one({"seq": 3}, {"$set": {"deleted_ms": 5}})
    await store(db, 4)
    assert await take(feed, 2) == [1, 4]


async def test_a_resync_reads_from_the_last_delivered_and_repeats_nothing(
    db: Db, hub: ChangeHub
) -> None:
    feed = await hub.memories(project_id=PROJECT, session_id=SESSION, after_seq=0)
    memories = aiter(feed)
    await store(db, 1, 2)
    assert await take(memories, 2) == [1, 2]
    feed.resync()  # as after a stream that was reopened
    await store(db, 3)
    assert await take(memories, 1) == [3]
    with pytest.raises(TimeoutError):
        await take(memories, 1, wait=0.5)


async def test_a_feed_over_its_queue_limit_fails_and_says_so(db: Db, hub: ChangeHub) -> None:
    told: list[SubscriberTooSlow] = []
    feed = await hub.memories(
        project_id=PROJECT, session_id=SESSION, after_seq=None, on_too_slow=told.append
    )
    await store(db, *range(1, 61))  # 60 changes to a reader that takes none
    for _ in range(100):
        if told:
            break
        await asyncio.sleep(0.05)
    assert len(told) == 1
    assert hub.subscribers == 0  # dropped: no change is held for it any more
    with pytest.raises(SubscriberTooSlow):
        await take(aiter(feed), 1)


async def test_an_unknown_session_is_not_found_and_leaves_no_feed(hub: ChangeHub) -> None:
    with pytest.raises(NotFound):
        await hub.memories(project_id=PROJECT, session_id="nope", after_seq=None)
    with pytest.raises(NotFound):
        await hub.session_changes(project_id="other", session_id=SESSION)
    assert hub.subscribers == 0


async def test_an_unused_stream_stops_and_a_new_subscriber_opens_it_again(
    db: Db, hub: ChangeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "IDLE_S", 0.2)
    feed = await hub.memories(project_id=PROJECT, session_id=SESSION, after_seq=0)
    feed.close()
    for _ in range(100):  # polled no more once unused for IDLE_S
        if not hub.following:
            break
        await asyncio.sleep(0.05)
    assert hub.following == []
    memories = aiter(await hub.memories(project_id=PROJECT, session_id=SESSION, after_seq=None))
    assert hub.following == ["memories"]
    await store(db, 1)
    assert await take(memories, 1) == [1]
