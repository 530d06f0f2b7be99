"""The ``subscribe`` scenario of ``memvault bench``: delivery of ``memoryAdded`` over WebSockets.

Subscribers speak ``graphql-transport-ws`` to the running ``memvault serve``, one connection each,
round robin over a few sessions; writers add one memory per ``addMemories`` call for the
scenario's duration. Each delivery is timed from the moment its write's HTTP response came back
(the commit) and from the write's start (carried in the memory's metadata). Every subscriber of a
session must receive exactly the seqs written to it, each once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import websockets
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from websockets.asyncio.client import ClientConnection

PROTOCOL = "graphql-transport-ws"
CONNECT_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 10.0  # for the last writes' deliveries, once the writers stop
REPEAT_GRACE_S = 0.3  # listened for late repeats once every delivery is in
MEMORY_ADDED = """subscription($id: String!, $after: Int) {
  memoryAdded(sessionId: $id, afterSeq: $after) { seq metadata } }"""
WRITE = """mutation($input: AddMemoriesInput!) {
  addMemories(input: $input) { memories { seq } } }"""


class DeliveryError(RuntimeError):
    """Subscribers that missed, repeated or reordered memories."""


@dataclass
class LiveSizes:
    subscribers: int = 100
    sessions: int = 10
    writers: int = 4


@dataclass
class Delivery:
    seq: int
    received: float  # time.perf_counter() when the message was read
    started: float | None  # the write's start, from the memory's metadata


@dataclass
class Subscriber:
    """One WebSocket with one ``memoryAdded`` operation; a reader task records deliveries."""

    session_id: str
    ws: ClientConnection
    deliveries: list[Delivery] = field(default_factory=list)
    failure: str | None = None
    reader: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # a message, or the end

    @classmethod
    async def open(cls, url: str, session_id: str, after_seq: int) -> Subscriber:
        ws = await websockets.connect(
            url,
            subprotocols=[PROTOCOL],  # type: ignore[list-item]
            open_timeout=CONNECT_TIMEOUT_S,
        )
        subscriber = cls(session_id, ws)
        await subscriber.send({"type": "connection_init", "payload": {}})
        ack = json.loads(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT_S))
        if ack.get("type") != "connection_ack":
            await ws.close()
            raise DeliveryError(f"subscribe: no connection_ack: {ack}")
        variables = {"id": session_id, "after": after_seq}
        payload = {"query": MEMORY_ADDED, "variables": variables}
        await subscriber.send({"id": "1", "type": "subscribe", "payload": payload})
        subscriber.reader = asyncio.create_task(subscriber.read())
        return subscriber

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                received = time.perf_counter()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "next" and "errors" not in message["payload"]:
                    memory = message["payload"]["data"]["memoryAdded"]
                    started = (memory["metadata"] or {}).get("started")
                    self.deliveries.append(Delivery(memory["seq"], received, started))
                elif kind == "ping":
                    await self.send({"type": "pong"})
                elif kind != "pong":
                    self.failure = self.failure or str(message)[:300]
                self.arrived.set()
        except ConnectionClosed as exc:
            self.failure = self.failure or f"connection closed: {exc}"
        self.failure = self.failure or "connection closed"
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        """Until ``count`` deliveries are in, or the subscription failed."""
        while self.failure is None and len(self.deliveries) < count:
            self.arrived.clear()
            await self.arrived.wait()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        await self.ws.close()


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def check_order(received: list[int], written: list[int]) -> dict[str, int]:
    """How one subscriber's seqs differ from its session's: ``lost`` (written, never received),
    ``repeated`` (received again), ``out_of_order`` (below the one before), ``unexpected``
    (received, never written)."""
    seen: set[int] = set()
    repeated = out_of_order = 0
    for previous, seq in zip([None, *received], received, strict=False):
        if seq in seen:
            repeated += 1
        elif previous is not None and seq < previous:
            out_of_order += 1
        seen.add(seq)
    expected = set(written)
    return {
        "lost": len(expected - seen),
        "repeated": repeated,
        "out_of_order": out_of_order,
        "unexpected": len(seen - expected),
    }


class SubscribeScenario:
    """Sessions, subscribers, writers; then the figures of every delivery."""

    def __init__(
        self,
        *,
        http_url: str,
        post: Callable[[str, bytes], Coroutine[Any, Any, tuple[int, bytes]]],  # (status, body)
        cpu: Callable[[], float],
        sizes: LiveSizes,
        duration: float,
    ) -> None:
        self.url = http_url.replace("http://", "ws://", 1) + "/graphql"
        self.post = post
        self.cpu = cpu
        self.sizes = sizes
        self.duration = duration
        self.run_id = uuid.uuid4().hex[:8]
        self.session_ids = [f"live-{self.run_id}-{n:03d}" for n in range(sizes.sessions)]
        self.written: dict[str, list[int]] = {s: [] for s in self.session_ids}
        self.committed: dict[tuple[str, int], float] = {}
        self.write_errors = 0
        self.first_error: str | None = None

    async def write(self, session_id: str, *, timed: bool) -> int | None:
        """Add one memory; its seq (None on failure). ``timed``: record it for the figures."""
        started = time.perf_counter()
        memory: dict[str, Any] = {"roleType": "USER", "content": "a live bench message"}
        if timed:
            memory["metadata"] = {"started": started}
        variables = {"input": {"sessionId": session_id, "memories": [memory]}}
        body = json.dumps({"query": WRITE, "variables": variables}).encode()
        try:
            status, raw = await self.post("/graphql", body)
            seq: int = json.loads(raw)["data"]["addMemories"]["memories"][0]["seq"]
            if status != 200:
                raise ValueError(status)
        except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError) as exc:
            self.write_errors += 1
            self.first_error = self.first_error or repr(exc)
            return None
        if timed:
            self.committed[session_id, seq] = time.perf_counter()
        self.written[session_id].append(seq)
        return seq

    async def run(self) -> dict[str, Any]:
        # Each session starts with one memory, so that it exists when subscribed to.
        first = {s: await self.write(s, timed=False) for s in self.session_ids}
        if None in first.values():
            raise DeliveryError(f"subscribe: could not create the sessions: {self.first_error}")
        self.written = {s: [] for s in self.session_ids}  # the subscriptions start after those
        subscribers = await asyncio.gather(
            *(
                Subscriber.open(self.url, session_id, first[session_id] or 0)
                for session_id in itertools.islice(
                    itertools.cycle(self.session_ids), self.sizes.subscribers
                )
            )
        )
        try:
            # A warm-up memory in every session, received by everyone: all subscriptions live.
            for session_id in self.session_ids:
                await self.write(session_id, timed=False)
            await self.drain(subscribers)
            return await self.measure(subscribers)
        finally:
            await asyncio.gather(*(s.close() for s in subscribers))

    async def measure(self, subscribers: list[Subscriber]) -> dict[str, Any]:
        targets = itertools.cycle(self.session_ids)
        cpu_before = self.cpu()
        started = time.perf_counter()
        deadline = started + self.duration

        async def writer() -> None:
            while time.perf_counter() < deadline:
                await self.write(next(targets), timed=True)

        await asyncio.gather(*(writer() for _ in range(self.sizes.writers)))
        await self.drain(subscribers)
        cpu = self.cpu() - cpu_before
        await asyncio.sleep(REPEAT_GRACE_S)
        return self.figures(subscribers, started=started, cpu=cpu)

    async def drain(self, subscribers: list[Subscriber]) -> None:
        """Wait until each subscriber has as many deliveries as its session has writes (or
        ``DRAIN_TIMEOUT_S`` passed, or one failed)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await asyncio.gather(
                    *(s.wait_for(len(self.written[s.session_id])) for s in subscribers)
                )

    def figures(
        self, subscribers: list[Subscriber], *, started: float, cpu: float
    ) -> dict[str, Any]:
        from_commit: list[float] = []
        from_start: list[float] = []
        counts = dict.fromkeys(("lost", "repeated", "out_of_order", "unexpected"), 0)
        last = started
        for subscriber in subscribers:
            received = [d.seq for d in subscriber.deliveries]
            for name, count in check_order(received, self.written[subscriber.session_id]).items():
                counts[name] += count
            for delivery in subscriber.deliveries:
                committed = self.committed.get((subscriber.session_id, delivery.seq))
                if committed is None or delivery.started is None:
                    continue  # the warm-up's
                from_commit.append((delivery.received - committed) * 1000)
                from_start.append((delivery.received - delivery.started) * 1000)
                last = max(last, delivery.received)
        events = len(from_commit)
        writes = len(self.committed)
        failures = [s.failure for s in subscribers if s.failure]
        figures: dict[str, Any] = {
            "subscribers": self.sizes.subscribers,
            "sessions": self.sizes.sessions,
            "writers": self.sizes.writers,
            "writes": writes,
            "write_errors": self.write_errors,
            "writes_per_s": round(writes / self.duration, 1),
            "events": events,
            "events_per_s": round(events / (last - started), 1) if last > started else 0.0,
            "p50_ms": round(percentile(from_commit, 0.5), 2),
            "p99_ms": round(percentile(from_commit, 0.99), 2),
            "p50_from_start_ms": round(percentile(from_start, 0.5), 2),
            "p99_from_start_ms": round(percentile(from_start, 0.99), 2),
            "cpu_ms_per_event": round(cpu * 1000 / max(events, 1), 3),
            **counts,
            "subscriber_failures": len(failures),
        }
        if self.first_error:
            figures["first_error"] = self.first_error
        if failures or any(counts.values()):
            detail = f"; first failure: {failures[0]}" if failures else ""
            raise DeliveryError(f"subscribe: deliveries wrong: {json.dumps(figures)}{detail}")
        return figures
