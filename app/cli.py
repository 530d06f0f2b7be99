"""The ``memvault`` command."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from memvault.config import Settings, SettingsError, unknown_variables
from memvault.errors import MemvaultError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from memvault.db.records import ApiKeyDoc, Database


log = logging.getLogger("memvault")


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _configure_logging(level: str, log_format: str = "text") -> None:
    from memvault.logs import configure

    configure(level, log_format)


class _OneLineFailures(click.Group):
    """The ``memvault`` group: a command that fails says why in one line (``Error: ...``) and
    exits with code 1; the traceback comes first only with ``MEMVAULT_LOG_LEVEL=DEBUG``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            raise click.ClickException(_failure_line(exc)) from None


def _failure_line(exc: Exception) -> str:
    """What a command's unexpected exception says, in one line (printing the traceback to
    stderr first at ``MEMVAULT_LOG_LEVEL=DEBUG``)."""
    from memvault.db.engine import describe_failure

    try:
        settings: Settings | None = Settings.from_env()
    except SettingsError:
        settings = None
    if settings is not None and settings.log_level.upper() == "DEBUG":
        traceback.print_exception(exc, file=sys.stderr)
    described = describe_failure(exc, settings) if settings is not None else None
    if described is not None:
        return described
    if isinstance(exc, MemvaultError):
        return exc.message
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc} (MEMVAULT_LOG_LEVEL=DEBUG prints the traceback)"


@click.group(cls=_OneLineFailures, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memvault", prog_name="memvault")
def main() -> None:
    """memvault: a memory store for AI chat agents, served as a GraphQL API."""


@main.command()
@click.option("--host", default=None, help="Address to bind (MEMVAULT_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (MEMVAULT_PORT, default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Run the GraphQL API (on the embedded engine when MEMVAULT_MONGODB_URI is unset)."""
    from memvault.db.engine import clear_stale_engine

    settings = _settings(host=host, port=port)
    _configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("nx_27017").setLevel(logging.WARNING)
    _warn_unknown_variables()
    # Bound first: a port in use or an unknown host fails before anything starts.
    listener = _listen(settings)
    if settings.embedded:  # a data directory in use stops us here, in one line
        clear_stale_engine(settings.data_dir.resolve())
    # uvicorn re-raises the SIGTERM/SIGINT it handled once its graceful shutdown is done, which
    # would end the process "killed by SIGTERM" (or "Aborted!" with code 1 after Ctrl-C); a stop
    # on request is a success: exit code 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda signum, frame: sys.exit(0))
    if not _run_on_uvicorns_loop(_serve(settings, listener)):
        raise SystemExit(1)


def _run_on_uvicorns_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the event loop uvicorn serves on (uvloop when installed). ``bench`` runs
    on it too, so that the floors it measures in its own process are not slowed by a slower loop
    than the server's (on asyncio's own loop the data layer's calls took 10-40% longer, which
    flattered the ratios)."""
    from uvicorn.loops.auto import auto_loop_factory

    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        return runner.run(main)


def _listen(settings: Settings) -> socket.socket:
    """A socket bound to ``MEMVAULT_HOST``:``MEMVAULT_PORT`` (uvicorn listens on it), or a
    one-line error naming them."""
    where = f"{settings.host}:{settings.port} (MEMVAULT_HOST/--host, MEMVAULT_PORT/--port)"
    try:
        # As uvicorn binds a socket it is to share: IPv6 only for an address with a colon.
        family, kind, proto, _, address = socket.getaddrinfo(
            settings.host,
            settings.port,
            family=socket.AF_INET6 if ":" in settings.host else socket.AF_INET,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE,
        )[0]
    except socket.gaierror as exc:
        raise click.ClickException(
            f"cannot listen on {where}: {settings.host!r} is not an address of this machine"
            f" ({exc.strerror})"
        ) from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        raise click.ClickException(f"cannot listen on {where}: {exc.strerror}") from None
    return listener


async def _serve(settings: Settings, listener: socket.socket) -> bool:
    """Start the runtime, then serve on ``listener`` until stopped; whether it served."""
    import uvicorn

    from memvault.http.uvicorn_protocol import HttpLimits, protocol_class
    from memvault.main import started_app

    class AnnouncingServer(uvicorn.Server):
        """uvicorn's server, saying "ready" once it accepts connections."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                url = f"http://{settings.host}:{settings.port}/graphql"
                log.info("memvault is ready: open %s", url)

    async with started_app(settings) as app:
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level=settings.log_level.lower(),
            # Access lines are INFO: below that level uvicorn would still format each one's fields
            access_log=False,  # app/http/observe.py writes them, with the request id and operation
            server_header=False,  # no "server: uvicorn" on every response
            lifespan="on",
            timeout_graceful_shutdown=10,
            http=protocol_class(HttpLimits.from_settings(settings)),
            timeout_keep_alive=settings.keep_alive_timeout,
            ws="websockets-sansio",
            ws_max_size=settings.max_body_bytes,  # one WebSocket message: as one request body
            ws_ping_interval=settings.ws_ping_interval,
            ws_ping_timeout=settings.ws_ping_interval,
        )
        server = AnnouncingServer(config)
        # A closed terminal (SIGHUP) stops the server like SIGTERM; uvicorn handles only INT and
        # TERM.
        signal.signal(
            signal.SIGHUP, lambda signum, frame: server.handle_exit(signal.SIGTERM, frame)
        )
        await server.serve(sockets=[listener])
        return server.started


@main.command("export-schema")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="File to write (default: stdout).",
)
def export_schema(output: Path | None) -> None:
    """Print the GraphQL SDL (the content of schema.graphql)."""
    from memvault.schema import schema

    sdl = schema.as_str() + "\n"
    if output is None:
        click.echo(sdl, nl=False)
    else:
        try:
            output.write_text(sdl)
        except OSError as exc:
            raise click.ClickException(f"cannot write --output {output}: {exc.strerror}") from None


@main.command("purge")
@click.option(
    "--older-than", type=int, default=None, help="Seconds (default MEMVAULT_PURGE_AFTER)."
)
def purge_command(older_than: int | None) -> None:
    """Hard-delete what was soft-deleted more than --older-than seconds ago, once."""
    settings = _settings()
    _configure_logging("WARNING")
    seconds = settings.purge_after if older_than is None else older_than
    if seconds < 0:
        raise click.BadParameter("must be >= 0", param_hint="--older-than")
    from memvault.db.purge import purge

    async def run(db: Database) -> dict[str, int]:
        return await purge(db, older_than_ms=seconds * 1000)

    counts = _with_database(settings, run)
    click.echo(json.dumps({"purged": counts, "older_than_seconds": seconds}))


@main.command()
@click.option(
    "--mongodb-uri", default=None, help="MongoDB to measure (default: a temporary embedded engine)."
)
@click.option(
    "--duration", type=float, default=5.0, show_default=True, help="Seconds per scenario."
)
@click.option(
    "--concurrency", type=int, default=32, show_default=True, help="Clients in write_concurrent."
)
@click.option("--users", type=int, default=10, show_default=True)
@click.option("--sessions-per-user", type=int, default=10, show_default=True)
@click.option("--memories-per-session", type=int, default=20, show_default=True)
@click.option(
    "--search-memories", type=int, default=100_000, show_default=True,
    help="Memories of the search corpus (the search_* scenarios).",
)  # fmt: skip
@click.option(
    "--growth", default="", help="Session sizes for the growth run, e.g. 100,10000,100000."
)
@click.option(
    "--only", default="", help="Scenarios to run, comma-separated (default: all), e.g. subscribe."
)
@click.option(
    "--subscribers", type=int, default=100, show_default=True, help="WebSockets in subscribe."
)
@click.option(
    "--subscribed-sessions", type=int, default=10, show_default=True,
    help="Sessions the subscribers share in subscribe (round robin).",
)  # fmt: skip
@click.option("--writers", type=int, default=4, show_default=True, help="Writers in subscribe.")
@click.option(
    "--compare-langchain", is_flag=True,
    help="Also run LangChain's MongoDBChatMessageHistory on the same database: add_message and"
    " the last-20 window at 100, 1000 and 10000 messages (or the --growth sizes), beside"
    " memvault's. Needs the langchain extra: pip install 'memvault[langchain]'.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def bench(
    mongodb_uri: str | None,
    duration: float,
    concurrency: int,
    users: int,
    sessions_per_user: int,
    memories_per_session: int,
    search_memories: int,
    growth: str,
    only: str,
    subscribers: int,
    subscribed_sessions: int,
    writers: int,
    compare_langchain: bool,
    as_json: bool,
) -> None:
    """Measure request cost over HTTP against the database's own floor."""
    from memvault.bench import SCENARIOS, Sizes, render_table, run_bench
    from memvault.bench_live import DeliveryError, LiveSizes

    counts = (
        users, sessions_per_user, memories_per_session, search_memories, subscribers,
        subscribed_sessions,
    )  # fmt: skip
    if duration <= 0 or concurrency < 1 or writers < 1 or min(counts) < 1:
        raise click.BadParameter("durations, counts and sizes must be positive")
    selected = tuple(name.strip() for name in only.split(",") if name.strip()) or SCENARIOS
    if unknown := set(selected) - set(SCENARIOS):
        raise click.BadParameter(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; one of {', '.join(SCENARIOS)}",
            param_hint="--only",
        )
    try:
        sizes_for_growth = [int(size) for size in growth.split(",") if size.strip()]
    except ValueError:
        raise click.BadParameter("a comma-separated list of sizes", param_hint="--growth") from None
    if compare_langchain:
        from memvault.bench_langchain import LangChainMissing, history_class

        try:
            history_class()
        except LangChainMissing as exc:
            raise click.ClickException(str(exc)) from None
    _configure_logging("WARNING")
    try:
        report = _run_on_uvicorns_loop(
            run_bench(
                mongodb_uri=mongodb_uri,
                duration=duration,
                concurrency=concurrency,
                sizes=Sizes(users, sessions_per_user, memories_per_session, search_memories),
                growth=sizes_for_growth,
                progress=not as_json and sys.stderr.isatty(),
                live=LiveSizes(subscribers, subscribed_sessions, writers),
                only=selected,
                compare_langchain=compare_langchain,
            )
        )
    except DeliveryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report) if as_json else render_table(report))


CREATE_HELP = (
    "Create the store if MEMVAULT_DATA_DIR holds none (without it, such a directory is refused:"
    " a mistyped path would get a new, empty store)."
)


@main.group()
def keys() -> None:
    """Manage API keys (stored only as hashes; a new key is printed once)."""


@keys.command("create")
@click.option("--project", required=True, help="The project the key reads and writes.")
@click.option(
    "--scope", type=click.Choice(["read", "write", "admin"]), default="write", show_default=True
)
@click.option("--name", default="", help="A label to recognise the key by.")
@click.option("--create", "create_store", is_flag=True, help=CREATE_HELP)
def keys_create(project: str, scope: str, name: str, create_store: bool) -> None:
    """Create a key and print it (it cannot be shown again). The store's first key makes
    every request need a key from then on (see MEMVAULT_AUTH)."""
    from memvault.db import api_keys
    from memvault.security import DEFAULT_PROJECT
    from memvault.validation import check_id

    settings = _settings()
    try:
        check_id(project, field="--project", settings=settings)
    except MemvaultError as exc:
        raise click.BadParameter(exc.message, param_hint="--project") from None

    async def create(db: Database) -> tuple[ApiKeyDoc, str, bool]:
        first = not await api_keys.keys_in_force(db)
        doc, key = await api_keys.create_key(db, project_id=project, scope=scope, name=name)
        return doc, key, first

    doc, key, first = _with_database(settings, create, create=create_store)
    click.echo(f"created key {doc['key_id']} (project {project!r}, scope {scope})")
    if first:
        click.echo(
            "this is the store's first API key: from now on every request needs a key (servers"
            " notice within MEMVAULT_AUTH_CACHE_SECONDS), also once its keys are revoked,"
            " unless MEMVAULT_AUTH=open"
        )
        reach = (
            "this key reaches it"
            if project == DEFAULT_PROJECT
            else "this key does not reach it; a key of that project does"
            f" (memvault keys create --project {DEFAULT_PROJECT})"
        )
        click.echo(f"data written without a key is in project {DEFAULT_PROJECT!r}: {reach}")
    click.echo("store it now; it is not shown again:")
    click.echo(key)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
def keys_list(as_json: bool) -> None:
    """List keys: id, project, scope, state, created (UTC), name (never the key)."""
    from memvault.db import api_keys

    rows = _with_database(_settings(), api_keys.list_keys)
    table = [("KEY ID", "PROJECT", "SCOPE", "STATE", "CREATED (UTC)", "NAME")]
    for row in rows:
        created = datetime.fromtimestamp(row["created_ms"] / 1000, tz=UTC)
        record = {
            "key_id": row["key_id"],
            "project": row["project_id"],
            "scope": row["scope"],
            "name": row.get("name", ""),
            "created_ms": row["created_ms"],
            "created": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "revoked": bool(row["revoked_ms"]),
        }
        if as_json:
            click.echo(json.dumps(record))
        state = "revoked" if record["revoked"] else "active"
        when = created.strftime("%Y-%m-%d %H:%M:%S")
        table.append(
            (row["key_id"], row["project_id"], row["scope"], state, when, str(record["name"]))
        )
    if as_json:
        return
    if not rows:
        click.echo("no keys (see MEMVAULT_AUTH for whether requests need one)")
        return
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        click.echo("  ".join([*cells, line[-1]]).rstrip())


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke a key, given by its id or as the whole key (servers notice within
    MEMVAULT_AUTH_CACHE_SECONDS)."""
    from memvault.db import api_keys

    settings = _settings()

    async def revoke(db: Database) -> tuple[ApiKeyDoc, int]:
        doc = await api_keys.revoke_key(db, key_id=key)
        return doc, await api_keys.active_key_count(db)

    doc, active = _with_database(settings, revoke)
    click.echo(f"revoked key {doc['key_id']} (project {doc['project_id']!r})")
    if active == 0:
        if settings.auth == "open":
            click.echo("no active key is left: with MEMVAULT_AUTH=open, servers run open again")
        else:
            click.echo(
                "no active key is left: requests still need one (the store needs keys since"
                " its first; MEMVAULT_AUTH=open would run it open again)"
            )


@main.group()
def documents() -> None:
    """Manage persisted GraphQL documents (see MEMVAULT_PERSISTED_ONLY)."""


@documents.command("add")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--create", "create_store", is_flag=True, help=CREATE_HELP)
def documents_add(files: tuple[Path, ...], create_store: bool) -> None:
    """Register GraphQL documents (one per file) and print each one's SHA-256 hash, the
    sha256Hash clients send. Nothing is stored unless every file parses and validates."""
    from memvault.db.persisted import query_hash, store_query
    from memvault.http.persisted import document_errors
    from memvault.schema import build_schema

    settings = _settings()
    schema = build_schema(settings)
    texts: list[tuple[Path, str]] = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        errors = document_errors(schema, text, settings)
        if errors:
            raise click.ClickException(f"{path}: {'; '.join(errors)}")
        texts.append((path, text))

    async def add(db: Database) -> list[bool]:
        limit = settings.max_persisted_queries
        return [await store_query(db, text, limit=limit) for _, text in texts]

    stored = _with_database(settings, add, create=create_store)
    for (path, text), ok in zip(texts, stored, strict=True):
        click.echo(f"{query_hash(text)}  {path}")
        if not ok:
            raise click.ClickException(
                f"{path} not stored: MEMVAULT_MAX_PERSISTED_QUERIES"
                f" ({settings.max_persisted_queries}) documents are stored"
            )


T = TypeVar("T")


def _with_database(
    settings: Settings, work: Callable[[Database], Awaitable[T]], *, create: bool = False
) -> T:
    """Run ``work`` on the command's database (see ``database_for_command``: ``create`` lets it
    create a store in a data directory that holds none)."""
    from memvault.db.engine import database_for_command

    async def run() -> T:
        async with database_for_command(settings, create=create) as db:
            return await work(db)

    _configure_logging("WARNING")
    _warn_unknown_variables()
    return asyncio.run(run())


def _warn_unknown_variables() -> None:
    """One warning per ``MEMVAULT_*`` variable that nothing reads (a typo is otherwise silent)."""
    for name, near in unknown_variables():
        hint = f"did you mean {near}? " if near else ""
        log.warning("%s is not a memvault setting (%sit is ignored)", name, hint)


if __name__ == "__main__":
    main()
