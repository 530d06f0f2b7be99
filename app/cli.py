"""The ``memvault`` command."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from app.config import Settings, SettingsError


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
def main() -> None:
    """memvault: a memory store for AI chat agents, served as a GraphQL API."""


@main.command()
@click.option("--host", default=None, help="Address to bind (MEMVAULT_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (MEMVAULT_PORT, default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Run the GraphQL API (on the embedded engine when MEMVAULT_MONGODB_URI is unset)."""
    import uvicorn

    from app.main import create_app

    settings = _settings(host=host, port=port)
    _configure_logging(settings.log_level)
    logging.getLogger("nx_27017").setLevel(logging.WARNING)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
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
    from app.schema import schema

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
    counts = asyncio.run(_purge(settings, seconds))
    click.echo(json.dumps({"purged": counts, "older_than_seconds": seconds}))


async def _purge(settings: Settings, seconds: int) -> dict[str, int]:
    from app.db.engine import EngineError, database_for_command
    from app.db.purge import purge

    try:
        async with database_for_command(settings) as db:
            return await purge(db, older_than_ms=seconds * 1000)
    except EngineError as exc:
        raise click.ClickException(f"cannot start the embedded engine: {exc}") from None


if __name__ == "__main__":
    main()
