"""Live updates: the changes of one process's watched collections, fanned out to subscribers.

A :class:`ChangeHub` follows one change stream per watched collection (``memories``,
``sessions``), opened on the first subscription and kept for the life of the process, and
hands each change to the feeds of its (project, session) in memory: one dictionary look-up per
change, whatever the number of subscribers. After any interruption (a database hiccup, an
engine restart) it reopens the stream with the last resume token, and then re-syncs every feed
from the database, so that a resume that silently lost changes (a history that was cut, or an
engine that forgot its own) loses nothing either.

A :class:`MemoryFeed` turns those changes into one session's memories in ``seq`` order: stored ones
first (after a given seq), then live ones, with no gap and no repeat. ``seq`` numbers are reserved
before memories are stored, so a racing writer can store ``seq`` 11 before 10: a memory waits until
those below it are stored, for at most :data:`HOLE_GRACE_S` (numbers of failed or retried calls are
never stored). A memory stored later still, below one already delivered, is delivered late rather
than lost.

A feed holds at most ``queue_limit`` changes not yet taken by its subscriber: one more and the
subscriber is too slow, is told so (:class:`SubscriberTooSlow`) and is dropped, so that a client
that stops reading never makes the process grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from memvault.db.changes import CATCH_UP_BATCH, memories_after, watch
from memvault.db.errors import DatabaseError
from memvault.db.sessions import find_session, require_session
from memvault.errors import ServiceUnavailable, SubscriberTooSlow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from memvault.db.changes import Change, Watched
    from memvault.db.records import Database, Doc, MemoryDoc, SessionDoc

log = logging.getLogger("memvault.live")

HOLE_GRACE_S = 2.0
"""How long a memory waits for the memories numbered below it (being stored by racing writers)."""
OPEN_TIMEOUT_S = 10.0
"""How long a new subscription waits for the change stream to open."""
RETRY_S = (0.1, 0.25, 0.5, 1.0, 2.0)
"""Pauses between attempts to reopen a change stream (the last one repeats)."""
IDLE_S = 30.0
"""How long a change stream without subscribers is kept open (on the embedded engine an open
stream is polled: 5% of a core for nothing)."""
MAX_SKIPPED = 1000
"""Numbers given up on that a feed remembers (to deliver late arrivals once)."""

Key = tuple[str, str]  # (project_id, session_id)


class SessionChangeKind(Enum):
    """What happened to a session."""

    UPDATED = "UPDATED"
    DELETED = "DELETED"
    RESTORED = "RESTORED"


@dataclass
class _Stream:
    """One followed change stream and the feeds it serves."""

    collection: Watched
    feeds: dict[Key, set[_Feed]] = field(default_factory=dict)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None  # why the stream is not open (last error), while it is not
    task: asyncio.Task[None] | None = None
    reopened: int = 0  # times reopened after an interruption


class ChangeHub:
    """The live changes of one process, fanned out to its feeds (see the module's doc)."""

    def __init__(self, db: Database, *, queue_limit: int) -> None:
        self.db = db
        self.queue_limit = queue_limit
        self._streams: dict[Watched, _Stream] = {
            "memories": _Stream("memories"),
            "sessions": _Stream("sessions"),
        }
        self.closed = False

    @property
    def following(self) -> list[str]:
        """The collections whose change streams this process follows now."""
        return [name for name, stream in self._streams.items() if stream.task is not None]

    @property
    def subscribers(self) -> int:
        """Feeds open now."""
        return sum(len(feeds) for s in self._streams.values() for feeds in s.feeds.values())

    async def memories(
        self,
        *,
        project_id: str,
        session_id: str,
        after_seq: int | None,
        on_too_slow: Callable[[SubscriberTooSlow], None] | None = None,
    ) -> MemoryFeed:
        """A feed of the session's memories after ``after_seq`` (stored ones first), or of the
        memories stored from now on; NOT_FOUND when the project has no such session."""
        feed = MemoryFeed(self, (project_id, session_id), after_seq, on_too_slow)
        await self._open(feed, self._streams["memories"])
        try:
            session = await require_session(self.db, project_id=project_id, session_id=session_id)
            if after_seq is None:
                feed.last = int(session.get("next_seq", 0))
        except BaseException:
            feed.close()
            raise
        return feed

    async def session_changes(
        self,
        *,
        project_id: str,
        session_id: str,
        on_too_slow: Callable[[SubscriberTooSlow], None] | None = None,
    ) -> SessionFeed:
        """A feed of the session's changes from now on; NOT_FOUND when there is no session."""
        feed = SessionFeed(self, (project_id, session_id), on_too_slow)
        await self._open(feed, self._streams["sessions"])
        try:
            session = await require_session(self.db, project_id=project_id, session_id=session_id)
            feed.seen = _visible(session)
        except BaseException:
            feed.close()
            raise
        return feed

    async def stop(self) -> None:
        """Stop following; every open feed ends."""
        self.closed = True
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for stream in self._streams.values():
            for feeds in list(stream.feeds.values()):
                for feed in list(feeds):
                    feed.fail(ServiceUnavailable("the server is shutting down"))

    async def _open(self, feed: _Feed, stream: _Stream) -> None:
        """Register ``feed`` and wait until its stream is open (changes from now on are seen)."""
        if self.closed:
            raise ServiceUnavailable("the server is shutting down")
        stream.feeds.setdefault(feed.key, set()).add(feed)
        feed.stream = stream
        if stream.task is None:
            stream.task = asyncio.create_task(
                self._follow(stream), name=f"live-{stream.collection}"
            )
        try:
            await asyncio.wait_for(stream.opened.wait(), OPEN_TIMEOUT_S)
        except TimeoutError:
            feed.close()
            why = stream.failure or "the change stream did not open"
            raise ServiceUnavailable(f"live updates are unavailable: {why}") from None

    def forget(self, feed: _Feed) -> None:
        """Stop handing changes to ``feed``."""
        stream = feed.stream
        if stream is None:
            return
        feeds = stream.feeds.get(feed.key)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del stream.feeds[feed.key]

    async def _follow(self, stream: _Stream) -> None:
        """Follow ``stream`` while it has feeds (and :data:`IDLE_S` longer): after an error,
        reopen it with the last token and, once it is open, re-sync its feeds from the
        database."""
        token: Mapping[str, Any] | None = None
        failures = 0
        unused_since: float | None = None

        def opened() -> None:
            stream.opened.set()
            stream.failure = None
            if stream.reopened:
                self._resync(stream)

        def unused() -> bool:
            nonlocal unused_since
            if stream.feeds:
                unused_since = None
                return False
            unused_since = unused_since or time.monotonic()
            if time.monotonic() - unused_since < IDLE_S:
                return False
            stream.opened.clear()  # a feed that comes now waits for the next stream
            return True

        while True:
            try:
                async for change in watch(
                    self.db, stream.collection, resume_after=token, opened=opened, until=unused
                ):
                    failures = 0
                    token = change.token
                    self._dispatch(stream, change)
            except DatabaseError as exc:
                stream.failure = _one_line(exc)
            else:  # unused: stop, unless a feed came meanwhile (it waits for a new stream)
                if not stream.feeds:
                    stream.task = None
                    return
                token, unused_since = None, None  # nobody missed anything: from now on
                continue
            if stream.opened.is_set():
                stream.opened.clear()
                log.warning(
                    "change stream of %s interrupted (%s); reopening",
                    stream.collection,
                    stream.failure,
                )
            stream.reopened += 1
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    def _resync(self, stream: _Stream) -> None:
        for feeds in stream.feeds.values():
            for feed in feeds:
                feed.resync()

    def _dispatch(self, stream: _Stream, change: Change) -> None:
        doc = change.doc
        if doc is None:  # a delete on MongoDB: no document to route (erased data was deleted)
            return
        feeds = stream.feeds.get((str(doc.get("project_id")), str(doc.get("session_id"))))
        if not feeds:
            return
        if change.kind == "delete":  # erased: as deleted, to whom it may concern
            doc["deleted_ms"] = doc.get("deleted_ms") or 1
        for feed in list(feeds):
            feed.offer(doc)


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


class _Feed:
    """What the hub hands changes to: a bounded inbox and a wake-up."""

    def __init__(
        self,
        hub: ChangeHub,
        key: Key,
        on_too_slow: Callable[[SubscriberTooSlow], None] | None,
    ) -> None:
        self.hub = hub
        self.key = key
        self.stream: _Stream | None = None
        self.inbox: deque[Doc] = deque()
        self.wake = asyncio.Event()
        self.must_resync = False
        self.failure: BaseException | None = None
        self.on_too_slow = on_too_slow

    def offer(self, doc: Doc) -> None:
        """A change for this feed (from the hub)."""
        if len(self.inbox) >= self.hub.queue_limit:
            too_slow = SubscriberTooSlow(
                f"the subscriber did not keep up: {self.hub.queue_limit} changes were waiting"
                " (MEMVAULT_SUBSCRIPTION_QUEUE_LIMIT); subscribe again after the last seq received"
            )
            self.fail(too_slow)
            if self.on_too_slow is not None:
                self.on_too_slow(too_slow)
            return
        self.inbox.append(doc)
        self.wake.set()

    def resync(self) -> None:
        self.must_resync = True
        self.wake.set()

    def fail(self, error: BaseException) -> None:
        """End the feed with ``error`` (raised to its reader)."""
        self.failure = error
        self.inbox.clear()
        self.close()
        self.wake.set()

    def close(self) -> None:
        self.hub.forget(self)

    async def _wait(self, seconds: float | None = None) -> None:
        if self.failure is not None:
            raise self.failure
        if not self.wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), seconds)
        self.wake.clear()
        if self.failure is not None:
            raise self.failure


class MemoryFeed(_Feed):
    """One session's memories for one subscriber, in ``seq`` order (see the module's doc)."""

    def __init__(
        self,
        hub: ChangeHub,
        key: Key,
        after_seq: int | None,
        on_too_slow: Callable[[SubscriberTooSlow], None] | None,
    ) -> None:
        super().__init__(hub, key, on_too_slow)
        self.last = after_seq or 0  # delivered (or given up on) up to here
        self.must_resync = after_seq is not None  # catch up with what is stored first
        self.stored_after: int | None = None  # the next stored page starts after it
        self.pending: dict[int, MemoryDoc] = {}  # above last, waiting for the numbers below
        self.skipped: deque[int] = deque(maxlen=MAX_SKIPPED)
        self.hole_since: float | None = None
        self._memories: AsyncIterator[MemoryDoc] | None = None

    def __aiter__(self) -> AsyncIterator[MemoryDoc]:
        """The one iteration of this feed (each ``async for`` goes on with it)."""
        if self._memories is None:
            self._memories = self._run()
        return self._memories

    async def _run(self) -> AsyncIterator[MemoryDoc]:
        try:
            while True:
                if self.must_resync:
                    self.must_resync = False
                    self.stored_after = self.last
                if self.stored_after is not None and len(self.pending) < CATCH_UP_PENDING:
                    await self._read_stored()
                self._take_inbox()
                while (doc := self._next()) is not None:
                    yield doc
                if self.failure is not None:
                    raise self.failure
                if self.stored_after is not None and len(self.pending) < CATCH_UP_PENDING:
                    continue  # the next stored page
                timeout = await self._hole_timeout() if self.pending else None
                if timeout != 0.0:
                    await self._wait(timeout)
        finally:
            self.close()

    async def _read_stored(self) -> None:
        """One page of stored memories after ``stored_after`` into ``pending``."""
        assert self.stored_after is not None
        project_id, session_id = self.key
        rows = await memories_after(
            self.hub.db, project_id=project_id, session_id=session_id, after_seq=self.stored_after
        )
        for row in rows:
            self._add(row)
        self.stored_after = int(rows[-1]["seq"]) if len(rows) == CATCH_UP_BATCH else None

    def _take_inbox(self) -> None:
        while self.inbox:
            self._add(self.inbox.popleft())  # type: ignore[arg-type]

    def _add(self, doc: MemoryDoc) -> None:
        seq = int(doc.get("seq", 0))
        if seq <= self.last:
            if seq in self.skipped and not doc.get("deleted_ms"):  # late: deliver it once
                self.skipped.remove(seq)
                self.pending[seq] = doc
            return
        known = self.pending.get(seq)
        if known is None or _newer(doc, known):
            self.pending[seq] = doc

    def _next(self) -> MemoryDoc | None:
        """The next memory to deliver, in order; None when the next number is not here."""
        while self.pending:
            low = min(self.pending)
            if low > self.last + 1:
                if self.hole_since is None:
                    self.hole_since = time.monotonic()
                return None
            doc = self.pending.pop(low)
            self.last = max(self.last, low)
            self.hole_since = None
            if not doc.get("deleted_ms"):
                return doc
        return None

    async def _hole_timeout(self) -> float:
        """How long to wait more for the numbers below the pending memories; past the grace,
        the hole is read once from the database and then given up."""
        if self.hole_since is None:
            self.hole_since = time.monotonic()
        low = min(self.pending)
        stored_ms = int(self.pending[low].get("updated_ms", 0))
        waited = time.monotonic() - self.hole_since
        # a memory stored long ago has no writer below it still at work: no wait
        age = time.time() - stored_ms / 1000
        left = HOLE_GRACE_S - max(waited, min(age, HOLE_GRACE_S))
        if left > 0:
            return left
        project_id, session_id = self.key
        rows = await memories_after(
            self.hub.db,
            project_id=project_id,
            session_id=session_id,
            after_seq=self.last,
            before_seq=low,
        )
        for row in rows:
            self._add(row)
        if min(self.pending) > self.last + 1:  # still missing: give those numbers up
            given_up = range(self.last + 1, min(self.pending))
            self.skipped.extend(given_up[-MAX_SKIPPED:])
            self.last = given_up[-1]
        self.hole_since = None
        return 0.0


CATCH_UP_PENDING = 1000  # read stored pages while fewer memories than this wait


def _newer(doc: MemoryDoc, known: MemoryDoc) -> bool:
    """Whether ``doc`` is a later state of the memory ``known``: a deletion always is."""
    if known.get("deleted_ms"):
        return False
    return bool(doc.get("deleted_ms")) or int(doc.get("version", 0)) >= int(known.get("version", 0))


class SessionFeed(_Feed):
    """One session's changes for one subscriber: UPDATED (metadata or user), DELETED,
    RESTORED; each with the session as it is after the change."""

    def __init__(
        self,
        hub: ChangeHub,
        key: Key,
        on_too_slow: Callable[[SubscriberTooSlow], None] | None,
    ) -> None:
        super().__init__(hub, key, on_too_slow)
        self.seen: tuple[Any, ...] = ()
        self._changes: AsyncIterator[tuple[SessionChangeKind, SessionDoc]] | None = None

    def __aiter__(self) -> AsyncIterator[tuple[SessionChangeKind, SessionDoc]]:
        """The one iteration of this feed (each ``async for`` goes on with it)."""
        if self._changes is None:
            self._changes = self._run()
        return self._changes

    async def _run(self) -> AsyncIterator[tuple[SessionChangeKind, SessionDoc]]:
        try:
            while True:
                if self.must_resync:
                    self.must_resync = False
                    project_id, session_id = self.key
                    current = await find_session(
                        self.hub.db, project_id=project_id, session_id=session_id
                    )
                    if current is not None:
                        self.inbox.append(current)  # type: ignore[arg-type]
                while self.inbox:
                    doc: SessionDoc = self.inbox.popleft()  # type: ignore[assignment]
                    kind = self._kind(doc)
                    if kind is not None:
                        yield kind, doc
                await self._wait()
        finally:
            self.close()

    def _kind(self, doc: SessionDoc) -> SessionChangeKind | None:
        """What changed since the last state seen, if anything a subscriber is told of."""
        before, after = self.seen, _visible(doc)
        self.seen = after
        if not before or before == after:
            return None
        if after[0] and not before[0]:
            return SessionChangeKind.DELETED
        if before[0] and not after[0]:
            return SessionChangeKind.RESTORED
        return SessionChangeKind.UPDATED


def _visible(doc: SessionDoc) -> tuple[Any, ...]:
    """What a session's subscribers are told changes of: deleted or not, user, metadata."""
    return (bool(doc.get("deleted_ms")), doc.get("user_id"), doc.get("metadata"))
