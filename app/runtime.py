"""Per-process state: the engine, the client, the authenticator and the background tasks, built
once at start (:func:`start_runtime`) and handed to every request through Starlette's lifespan
state (:class:`State`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from memvault.db.engine import CommandCounter, EmbeddedEngine, connect, deadline, redact_uri
from memvault.db.errors import DatabaseError
from memvault.db.indexes import ensure_indexes
from memvault.db.live import ChangeHub
from memvault.db.purge import purge
from memvault.db.queries import UNION_SIZES
from memvault.db.shapes import warm_up
from memvault.metrics import Metrics
from memvault.security import Authenticator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.requests import HTTPConnection

    from memvault.config import Settings
    from memvault.db.records import Client, Database

log = logging.getLogger("memvault")

# Bound of start-up's and the purge's database work (index builds, the warm-up, deleting a
# backlog): no request waits for it, and on a big database it may rightly take minutes, far
# past MEMVAULT_DB_TIMEOUT_MS, which bounds every other operation.
BACKGROUND_TIMEOUT_S = 600.0
# A nested read allocates tens of thousands of objects that live until its response is written.
# At CPython's default young threshold (700) that is dozens of collections per request, which
# promote the live request objects until full collections walk the whole heap (schema, driver).
GC_YOUNG_THRESHOLD = 50_000


@dataclass
class Runtime:
    """What the lifespan builds and the handlers use."""

    settings: Settings
    client: Client
    db: Database
    authenticator: Authenticator
    live: ChangeHub
    metrics: Metrics
    engine: EmbeddedEngine | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    owns_client: bool = True  # closed by :func:`stop_runtime` (not a client a test passed in)


class State(TypedDict):
    """The lifespan's state: Starlette copies it into every request's ``request.state``."""

    runtime: Runtime


def runtime_of(connection: HTTPConnection) -> Runtime:
    """The runtime of the process serving this request (from its lifespan state)."""
    runtime: Runtime = connection.state.runtime
    return runtime


async def start_runtime(
    settings: Settings, client: Client | None = None, *, metrics: Metrics | None = None
) -> Runtime:
    """Start the embedded engine (unless ``MEMVAULT_MONGODB_URI`` names a server) and connect,
    or use ``client`` (tests: it is not closed); then check the database, ensure the indexes,
    warm the engine's read shapes and start the background tasks. What it started is stopped
    again when a step fails.

    ``metrics`` (the app's) gets the database commands (only with a client of our own), the key
    cache and the engine's restarts.
    """
    engine: EmbeddedEngine | None = None
    metrics = metrics or Metrics()
    if client is None:
        uri = settings.mongodb_uri
        if uri is None:
            engine = EmbeddedEngine(settings.data_dir, start_timeout=settings.engine_start_timeout)
            log.info("starting embedded engine (nx-27017) with data in %s", engine.data_dir)
            uri = await asyncio.to_thread(engine.start)
            log.info("embedded engine answers on %s", uri)
        else:
            log.info("using MongoDB at %s", redact_uri(uri))
        client = connect(
            uri,
            timeout_ms=settings.db_timeout_ms,
            operation_timeout_ms=settings.db_timeout_ms,
            event_listeners=[CommandCounter(metrics.db_command)],
        )
        owns_client = True
    else:
        owns_client = False
    database = client[settings.database]
    runtime = Runtime(
        settings=settings,
        client=client,
        db=database,
        authenticator=Authenticator(
            database,
            required=settings.auth == "required",
            cache_seconds=settings.auth_cache_seconds,
            reopens=settings.auth == "open",
        ),
        live=ChangeHub(database, queue_limit=settings.subscription_queue_limit),
        metrics=metrics,
        engine=engine,
        owns_client=owns_client,
    )
    metrics.caches["api_keys"] = runtime.authenticator.cache_counts
    metrics.engine_restarts = lambda: engine.restarts if engine is not None else 0
    try:
        await _prepare(runtime)
    except BaseException:
        await stop_runtime(runtime)
        raise
    return runtime


async def stop_runtime(runtime: Runtime) -> None:
    """Stop the live changes and the background tasks, close the client (if ours) and stop
    the embedded engine."""
    await runtime.live.stop()
    for task in runtime.tasks:
        task.cancel()
    for task in runtime.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if runtime.owns_client:
        await runtime.client.close()
    if runtime.engine is not None:
        runtime.engine.stop()
        log.info("embedded engine stopped")


async def _prepare(runtime: Runtime) -> None:
    settings = runtime.settings
    await runtime.db.command("ping")
    log.info("database %r answers ping", settings.database)
    embedded = await is_embedded_engine(runtime.client)
    with deadline(BACKGROUND_TIMEOUT_S):
        declared = await ensure_indexes(runtime.db, embedded=embedded)
    log.info("ensured %d indexes (%s set)", declared, "embedded" if embedded else "MongoDB")
    if embedded and runtime.owns_client:  # (tests sharing one client skip it)
        # The largest unions (~0.5 s of engine CPU each to compile) are left to their first
        # use: warming them here delayed every start by seconds, and warming them behind a
        # serving server stalled the engine under the first requests' load.
        await warm(runtime.db, UNION_SIZES[:-1])
    if runtime.engine is not None:
        runtime.tasks.append(
            asyncio.create_task(runtime.engine.supervise(), name="engine-supervisor")
        )
    if settings.purge_interval > 0:
        runtime.tasks.append(asyncio.create_task(purge_forever(runtime), name="purge"))
        log.info(
            "purge task: every %ds, items deleted over %ds ago",
            settings.purge_interval,
            settings.purge_after,
        )
    await _announce_auth(runtime)


async def is_embedded_engine(client: Client) -> bool:
    info = await client.admin.command("buildInfo")
    return bool(info.get("process") == "nx_27017")


async def purge_forever(runtime: Runtime) -> None:
    settings = runtime.settings
    while True:
        await asyncio.sleep(settings.purge_interval)
        try:
            with deadline(BACKGROUND_TIMEOUT_S):
                counts = await purge(runtime.db, older_than_ms=settings.purge_after * 1000)
            log.info("purge: removed %s", counts)
        except DatabaseError as exc:
            log.warning("purge failed, will try again: %s", exc)


async def warm(db: Database, sizes: Sequence[int]) -> None:
    """Run the engine's batched read shapes of these union sizes once (``db/shapes.py``)."""
    started = time.monotonic()
    with deadline(BACKGROUND_TIMEOUT_S):
        sent = await warm_up(db, sizes=sizes)
    elapsed = time.monotonic() - started
    log.info("warmed %d read shapes (unions up to %d) in %.1fs", sent, max(sizes), elapsed)


def tune_garbage_collector(settings: Settings) -> None:
    """For a long-running server (``memvault serve``, once started): leave what start-up built
    out of collections (``gc.freeze``) and collect young objects every ``GC_YOUNG_THRESHOLD``
    allocations."""
    # Only with the fast path: its executor frees a request's objects when the request ends.
    # Plain Strawberry leaves each request in a reference cycle (variables included) that
    # only a collection frees: rarer collections would hold hundreds of MB of them.
    if not settings.fast_path:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def _announce_auth(runtime: Runtime) -> None:
    if runtime.settings.auth == "required":
        log.info("auth: required; every request needs an API key")
    elif await runtime.authenticator.keys_exist():
        log.info("auth: API keys are in force on this store, so every request needs one")
    else:
        log.warning(
            "auth: OPEN. No API key exists and MEMVAULT_AUTH is not 'required': anyone who can "
            "reach this port reads and writes the 'default' project. "
            "Create a key with `memvault keys create` or set MEMVAULT_AUTH=required."
        )
