"""The ``memvault`` command."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from memvault.config import Settings, SettingsError
from memvault.errors import MemvaultError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from memvault.db.records import ApiKeyDoc, Database


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memvault", prog_name="memvault")
def main() -> None:
    """memvault: a memory store for AI chat agents, served as a GraphQL API."""


@main.command()
@click.option("--host", default=None, help="Address to bind (MEMVAULT_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (MEMVAULT_PORT, default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Run the GraphQL API (on the embedded engine when MEMVAULT_MONGODB_URI is unset)."""
    import uvicorn

    from memvault.db.engine import EngineError, clear_stale_engine
    from memvault.http.uvicorn_protocol import HttpLimits, protocol_class
    from memvault.main import create_app

    settings = _settings(host=host, port=port)
    _configure_logging(settings.log_level)
    logging.getLogger("nx_27017").setLevel(logging.WARNING)
    if settings.embedded:  # a data directory in use stops us here, in one line
        try:
            clear_stale_engine(settings.data_dir.resolve())
        except EngineError as exc:
            raise click.ClickException(str(exc)) from None
    app = create_app(settings, tune_gc=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        # Access lines are INFO: below that level uvicorn would still format each one's fields
        access_log=logging.getLevelName(settings.log_level.upper()) <= logging.INFO,
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
    server = uvicorn.Server(config)
    # uvicorn re-raises the SIGTERM/SIGINT it handled once its graceful shutdown is done, which
    # would end the process "killed by SIGTERM" (or "Aborted!" with code 1 after Ctrl-C); a stop
    # on request is a success: exit code 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda signum, frame: sys.exit(0))
    # A closed terminal (SIGHUP) stops the server like SIGTERM; uvicorn handles only INT and TERM.
    signal.signal(signal.SIGHUP, lambda signum, frame: server.handle_exit(signal.SIGTERM, frame))
    server.run()
    if not server.started:
        raise SystemExit(1)


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
        output.write_text(sdl)


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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def bench(
    mongodb_uri: str | None,
    duration: float,
    concurrency: int,
    users: int,
    sessions_per_user: int,
    memories_per_session: int,
    growth: str,
    only: str,
    subscribers: int,
    subscribed_sessions: int,
    writers: int,
    as_json: bool,
) -> None:
    """Measure request cost over HTTP against the database's own floor."""
    from memvault.bench import SCENARIOS, Sizes, render_table, run_bench
    from memvault.bench_live import DeliveryError, LiveSizes

    counts = (users, sessions_per_user, memories_per_session, subscribers, subscribed_sessions)
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
    _configure_logging("WARNING")
    try:
        report = asyncio.run(
            run_bench(
                mongodb_uri=mongodb_uri,
                duration=duration,
                concurrency=concurrency,
                sizes=Sizes(users, sessions_per_user, memories_per_session),
                growth=sizes_for_growth,
                progress=not as_json and sys.stderr.isatty(),
                live=LiveSizes(subscribers, subscribed_sessions, writers),
                only=selected,
            )
        )
    except DeliveryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report) if as_json else render_table(report))


@main.group()
def keys() -> None:
    """Manage API keys (stored only as hashes; a new key is printed once)."""


@keys.command("create")
@click.option("--project", required=True, help="The project the key reads and writes.")
@click.option(
    "--scope", type=click.Choice(["read", "write", "admin"]), default="write", show_default=True
)
@click.option("--name", default="", help="A label to recognise the key by.")
def keys_create(project: str, scope: str, name: str) -> None:
    """Create a key and print it (it cannot be shown again)."""
    from memvault.db import api_keys
    from memvault.validation import check_id

    settings = _settings()
    try:
        check_id(project, field="--project", settings=settings)
    except MemvaultError as exc:
        raise click.BadParameter(exc.message, param_hint="--project") from None

    async def create(db: Database) -> tuple[ApiKeyDoc, str]:
        return await api_keys.create_key(db, project_id=project, scope=scope, name=name)

    doc, key = _with_database(settings, create)
    click.echo(f"created key {doc['key_id']} (project {project!r}, scope {scope})")
    click.echo("store it now; it is not shown again:")
    click.echo(key)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
def keys_list(as_json: bool) -> None:
    """List keys: id, project, scope, name, created, revoked (never the key)."""
    from memvault.db import api_keys

    rows = _with_database(_settings(), api_keys.list_keys)
    for row in rows:
        record = {
            "key_id": row["key_id"],
            "project": row["project_id"],
            "scope": row["scope"],
            "name": row.get("name", ""),
            "created_ms": row["created_ms"],
            "revoked": bool(row["revoked_ms"]),
        }
        if as_json:
            click.echo(json.dumps(record))
        else:
            state = "revoked" if record["revoked"] else "active"
            click.echo(
                f"{record['key_id']}  {record['project']}  {record['scope']:<5}  {state:<7}  "
                f"{record['name']}"
            )
    if not rows and not as_json:
        click.echo(
            "no keys: the server runs open on the 'default' project (unless MEMVAULT_AUTH=required)"
        )


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by id (servers notice within MEMVAULT_AUTH_CACHE_SECONDS)."""
    from memvault.db import api_keys

    async def revoke(db: Database) -> ApiKeyDoc:
        return await api_keys.revoke_key(db, key_id=key_id)

    try:
        _with_database(_settings(), revoke)
    except MemvaultError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"revoked key {key_id}")


@main.group()
def documents() -> None:
    """Manage persisted GraphQL documents (see MEMVAULT_PERSISTED_ONLY)."""


@documents.command("add")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def documents_add(files: tuple[Path, ...]) -> None:
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

    stored = _with_database(settings, add)
    for (path, text), ok in zip(texts, stored, strict=True):
        click.echo(f"{query_hash(text)}  {path}")
        if not ok:
            raise click.ClickException(
                f"{path} not stored: MEMVAULT_MAX_PERSISTED_QUERIES"
                f" ({settings.max_persisted_queries}) documents are stored"
            )


T = TypeVar("T")


def _with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on the command's database (see ``database_for_command``)."""
    from memvault.db.engine import EngineError, database_for_command

    async def run() -> T:
        async with database_for_command(settings) as db:
            return await work(db)

    _configure_logging("WARNING")
    try:
        return asyncio.run(run())
    except EngineError as exc:
        raise click.ClickException(f"cannot start the embedded engine: {exc}") from None


if __name__ == "__main__":
    main()
