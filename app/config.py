"""Settings: every knob is a ``MEMVAULT_`` environment variable, read once into ``Settings``."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

PREFIX = "MEMVAULT_"


class SettingsError(ValueError):
    """A setting has a value the service refuses to run with."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Typed configuration. ``Settings.from_env()`` is the only reader of the environment."""

    mongodb_uri: str | None = field(
        default=None, metadata={"doc": "MongoDB URI; unset runs the embedded engine"}
    )
    database: str = field(default="memvault", metadata={"doc": "database name"})
    data_dir: Path = field(default=Path(".memvault"), metadata={"doc": "embedded engine's files"})
    host: str = field(default="127.0.0.1", metadata={"doc": "address `memvault serve` binds"})
    port: int = field(default=8000, metadata={"doc": "port `memvault serve` binds"})
    log_level: str = field(default="INFO", metadata={"doc": "DEBUG, INFO, WARNING or ERROR"})
    db_timeout_ms: int = field(
        default=2000, metadata={"doc": "how long a request waits for the database"}
    )
    engine_start_timeout: float = field(
        default=20.0, metadata={"doc": "seconds the embedded engine may take to answer ping"}
    )
    purge_interval: int = field(
        default=3600, metadata={"doc": "seconds between purges; 0 disables"}
    )
    purge_after: int = field(default=86400, metadata={"doc": "seconds a soft-deleted item is kept"})
    default_page_size: int = field(
        default=20, metadata={"doc": "page size when neither first nor last is given"}
    )
    max_page_size: int = field(default=100, metadata={"doc": "largest first/last"})
    graphiql: bool = field(default=True, metadata={"doc": "serve GraphiQL on GET /graphql"})
    max_id_length: int = field(default=256, metadata={"doc": "longest user, session or memory id"})
    max_metadata_bytes: int = field(
        default=32768, metadata={"doc": "largest metadata object, JSON-encoded"}
    )
    max_metadata_depth: int = field(default=10, metadata={"doc": "deepest metadata nesting"})
    max_metadata_key_length: int = field(default=128, metadata={"doc": "longest metadata key"})
    max_content_bytes: int = field(
        default=262144, metadata={"doc": "largest memory content, UTF-8"}
    )
    auth: str = field(
        default="open", metadata={"doc": "`open`, or `required`: every request needs an API key"}
    )
    auth_cache_seconds: float = field(
        default=5.0, metadata={"doc": "how long a key lookup is cached (revocation delay)"}
    )
    max_query_depth: int = field(default=10, metadata={"doc": "deepest GraphQL selection"})
    max_aliases: int = field(default=20, metadata={"doc": "most aliases in one document"})
    max_tokens: int = field(default=5000, metadata={"doc": "most tokens in one document"})
    max_query_bytes: int = field(
        default=65536, metadata={"doc": "largest GraphQL document, UTF-8 bytes"}
    )
    max_body_bytes: int = field(
        default=5 * 1024 * 1024, metadata={"doc": "largest request body (413 above)"}
    )
    max_query_cost: int = field(
        default=100_000, metadata={"doc": "most objects a query may answer (see Limits)"}
    )
    max_response_bytes: int = field(
        default=32 * 1024 * 1024, metadata={"doc": "largest response body"}
    )
    request_timeout: float = field(
        default=10.0, metadata={"doc": "seconds a GraphQL request may run before it is stopped"}
    )
    max_memories_per_call: int = field(
        default=1000, metadata={"doc": "most memories in one addMemories"}
    )
    max_header_bytes: int = field(
        default=32768, metadata={"doc": "largest request line and headers together (431 above)"}
    )
    header_timeout: float = field(
        default=60.0, metadata={"doc": "seconds to receive a request's headers (408)"}
    )
    body_timeout: float = field(
        default=60.0, metadata={"doc": "seconds to receive a whole request body (408)"}
    )
    keep_alive_timeout: int = field(
        default=5, metadata={"doc": "seconds an idle kept-alive connection stays open"}
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``MEMVAULT_*`` variables (``env`` defaults to ``os.environ``)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, f.default)
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        checks = [
            (self.port > 0 and self.port < 65536, "MEMVAULT_PORT must be 1-65535"),
            (self.db_timeout_ms >= 50, "MEMVAULT_DB_TIMEOUT_MS must be at least 50"),
            (self.engine_start_timeout > 0, "MEMVAULT_ENGINE_START_TIMEOUT must be > 0"),
            (self.purge_interval >= 0, "MEMVAULT_PURGE_INTERVAL must be >= 0"),
            (self.purge_after >= 0, "MEMVAULT_PURGE_AFTER must be >= 0"),
            (1 <= self.max_page_size <= 1000, "MEMVAULT_MAX_PAGE_SIZE must be 1-1000"),
            (
                1 <= self.default_page_size <= self.max_page_size,
                "MEMVAULT_DEFAULT_PAGE_SIZE must be 1..MEMVAULT_MAX_PAGE_SIZE",
            ),
            (self.database.isidentifier(), "MEMVAULT_DATABASE must be an identifier"),
            (self.auth in {"open", "required"}, "MEMVAULT_AUTH must be open or required"),
            (self.auth_cache_seconds >= 0, "MEMVAULT_AUTH_CACHE_SECONDS must be >= 0"),
            (self.max_query_depth >= 2, "MEMVAULT_MAX_QUERY_DEPTH must be >= 2"),
            (self.max_aliases >= 0, "MEMVAULT_MAX_ALIASES must be >= 0"),
            (self.max_tokens >= 100, "MEMVAULT_MAX_TOKENS must be >= 100"),
            (self.max_query_bytes >= 1024, "MEMVAULT_MAX_QUERY_BYTES must be >= 1024"),
            (self.max_body_bytes >= 1024, "MEMVAULT_MAX_BODY_BYTES must be >= 1024"),
            (self.max_query_cost >= 1, "MEMVAULT_MAX_QUERY_COST must be >= 1"),
            (self.max_response_bytes >= 1024, "MEMVAULT_MAX_RESPONSE_BYTES must be >= 1024"),
            (self.request_timeout > 0, "MEMVAULT_REQUEST_TIMEOUT must be > 0"),
            (self.max_id_length >= 1, "MEMVAULT_MAX_ID_LENGTH must be >= 1"),
            (self.max_metadata_bytes >= 2, "MEMVAULT_MAX_METADATA_BYTES must be >= 2"),
            (self.max_metadata_depth >= 1, "MEMVAULT_MAX_METADATA_DEPTH must be >= 1"),
            (self.max_metadata_key_length >= 1, "MEMVAULT_MAX_METADATA_KEY_LENGTH must be >= 1"),
            (self.max_content_bytes >= 1, "MEMVAULT_MAX_CONTENT_BYTES must be >= 1"),
            (self.max_memories_per_call >= 1, "MEMVAULT_MAX_MEMORIES_PER_CALL must be >= 1"),
            (self.max_header_bytes >= 1024, "MEMVAULT_MAX_HEADER_BYTES must be >= 1024"),
            (self.header_timeout > 0, "MEMVAULT_HEADER_TIMEOUT must be > 0"),
            (self.body_timeout > 0, "MEMVAULT_BODY_TIMEOUT must be > 0"),
            (self.keep_alive_timeout >= 1, "MEMVAULT_KEEP_ALIVE_TIMEOUT must be >= 1"),
            (
                self.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
                "MEMVAULT_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

    @property
    def embedded(self) -> bool:
        """True when no MongoDB URI is configured and the embedded engine serves the data."""
        return self.mongodb_uri is None


def _parse(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(raw)
            return lowered in {"1", "true", "yes"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name.upper()}: cannot read {raw!r}") from None
    return raw


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the README's table is checked against it."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = "unset" if f.default is None else str(f.default)
        rows.append((PREFIX + f.name.upper(), default, str(f.metadata.get("doc", ""))))
    return rows
