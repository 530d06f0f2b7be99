"""Settings: every knob is a ``MEMVAULT_`` environment variable, read once into ``Settings``."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Mapping
    from ipaddress import IPv4Network, IPv6Network

PREFIX = "MEMVAULT_"
# What a browser sends in ``Origin``: scheme, host and port, lower case, nothing after them
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[a-z0-9.\-\[\]:]+")
# ``MEMVAULT_`` variables that are not settings of the server: the Python client's key.
OTHER_VARIABLES = frozenset({"MEMVAULT_API_KEY"})
T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value the service refuses to run with."""


def setting(default: T, doc: str) -> T:
    """A ``Settings`` field (a ``dataclasses.Field``, as ``field`` returns): its default and what
    it means (the README's Configuration table)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Typed configuration. ``Settings.from_env()`` is the only reader of the environment."""

    mongodb_uri: str | None = setting(None, "MongoDB URI; unset runs the embedded engine")
    database: str = setting("memvault", "database name")
    data_dir: Path = setting(Path(".memvault"), "embedded engine's files")  # noqa: RUF009
    host: str = setting("127.0.0.1", "address `memvault serve` binds")
    port: int = setting(8000, "port `memvault serve` binds")
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR")
    db_timeout_ms: int = setting(2000, "how long a request waits for the database")
    engine_start_timeout: float = setting(
        20.0, "seconds the embedded engine may take to answer ping"
    )
    purge_interval: int = setting(3600, "seconds between purges; 0 disables")
    purge_after: int = setting(86400, "seconds a soft-deleted item is kept")
    default_page_size: int = setting(20, "page size when neither first nor last is given")
    max_page_size: int = setting(100, "largest first/last")
    graphiql: bool = setting(True, "serve GraphiQL on GET /graphql")
    max_id_length: int = setting(256, "longest user, session or memory id")
    max_metadata_bytes: int = setting(32768, "largest metadata object, JSON-encoded")
    max_metadata_depth: int = setting(10, "deepest metadata nesting")
    max_metadata_key_length: int = setting(128, "longest metadata key")
    max_content_bytes: int = setting(262144, "largest memory content, UTF-8")
    auth: str = setting(
        "auto",
        "`auto`: open until the first API key is created, then keys for good; `required`: "
        "every request needs a key; `open`: open again once no active key is left (see Security)",
    )
    auth_cache_seconds: float = setting(5.0, "how long a key lookup is cached (revocation delay)")
    max_query_depth: int = setting(10, "deepest GraphQL selection")
    max_aliases: int = setting(20, "most aliases in one document")
    max_tokens: int = setting(5000, "most tokens in one document")
    max_query_bytes: int = setting(65536, "largest GraphQL document, UTF-8 bytes")
    max_body_bytes: int = setting(5 * 1024 * 1024, "largest request body (413 above)")
    max_query_cost: int = setting(100_000, "most objects a query may answer (see Limits)")
    max_response_bytes: int = setting(32 * 1024 * 1024, "largest response body")
    request_timeout: float = setting(10.0, "seconds a GraphQL request may run before it is stopped")
    max_memories_per_call: int = setting(1000, "most memories in one addMemories")
    max_header_bytes: int = setting(32768, "largest request line and headers together (431 above)")
    header_timeout: float = setting(60.0, "seconds to receive a request's headers (408)")
    body_timeout: float = setting(60.0, "seconds to receive a whole request body (408)")
    keep_alive_timeout: int = setting(5, "seconds an idle kept-alive connection stays open")
    fast_path: bool = setting(
        True, "`off` runs GraphQL as plain Strawberry: no shortcuts (see Performance)"
    )
    cors_origins: str = setting(
        "", "browser origins that may call the API, comma-separated; empty: none (see Frontends)"
    )
    persisted_only: bool = setting(
        False, "run only registered documents (`memvault documents add`; see Frontends)"
    )
    max_persisted_queries: int = setting(10000, "most persisted queries stored (see Frontends)")
    max_subscriptions_per_connection: int = setting(
        20, "most subscriptions at once on one WebSocket (see Live updates)"
    )
    subscription_queue_limit: int = setting(
        1000, "changes a subscriber may leave unread before it is closed as too slow"
    )
    ws_ping_interval: float = setting(
        20.0, "seconds between WebSocket pings; a peer silent as long again is closed"
    )
    log_format: str = setting(
        "text", "`text`, or `json`: one JSON object per line (see Observability)"
    )
    metrics_allow: str = setting(
        "127.0.0.1,::1",
        "client addresses or networks that may read /metrics without an admin key once keys"
        " exist, comma-separated; `none`: only admin keys (see Observability)",
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
            self._bound("engine_start_timeout", ">", 0),
            self._bound("purge_interval", ">=", 0),
            self._bound("purge_after", ">=", 0),
            (1 <= self.max_page_size <= 1000, "MEMVAULT_MAX_PAGE_SIZE must be 1-1000"),
            (
                1 <= self.default_page_size <= self.max_page_size,
                "MEMVAULT_DEFAULT_PAGE_SIZE must be 1..MEMVAULT_MAX_PAGE_SIZE",
            ),
            (self.database.isidentifier(), "MEMVAULT_DATABASE must be an identifier"),
            (
                self.auth in {"auto", "open", "required"},
                "MEMVAULT_AUTH must be auto, open or required",
            ),
            self._bound("auth_cache_seconds", ">=", 0),
            self._bound("max_query_depth", ">=", 2),
            self._bound("max_aliases", ">=", 0),
            self._bound("max_tokens", ">=", 100),
            self._bound("max_query_bytes", ">=", 1024),
            self._bound("max_body_bytes", ">=", 1024),
            self._bound("max_query_cost", ">=", 1),
            self._bound("max_response_bytes", ">=", 1024),
            self._bound("request_timeout", ">", 0),
            self._bound("max_id_length", ">=", 1),
            self._bound("max_metadata_bytes", ">=", 2),
            self._bound("max_metadata_depth", ">=", 1),
            self._bound("max_metadata_key_length", ">=", 1),
            self._bound("max_content_bytes", ">=", 1),
            self._bound("max_memories_per_call", ">=", 1),
            self._bound("max_header_bytes", ">=", 1024),
            self._bound("header_timeout", ">", 0),
            self._bound("body_timeout", ">", 0),
            self._bound("keep_alive_timeout", ">=", 1),
            self._bound("max_persisted_queries", ">=", 0),
            self._bound("max_subscriptions_per_connection", ">=", 1),
            self._bound("subscription_queue_limit", ">=", 1),
            self._bound("ws_ping_interval", ">", 0),
            (
                self.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
                "MEMVAULT_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)
        self._check_cors_origins()
        if self.log_format not in {"text", "json"}:
            raise SettingsError("MEMVAULT_LOG_FORMAT must be text or json")
        self._metrics_networks()

    def _check_cors_origins(self) -> None:
        origins = self.cors_origin_list
        if "*" in origins and (len(origins) > 1 or self.auth == "required"):
            raise SettingsError(
                "MEMVAULT_CORS_ORIGINS=* must stand alone, and only while no API key exists"
                " (not with MEMVAULT_AUTH=required): name the origins instead"
            )
        for origin in origins:
            if origin != "*" and not ORIGIN.fullmatch(origin):
                raise SettingsError(
                    f"MEMVAULT_CORS_ORIGINS: {origin!r} is not an origin such as"
                    " https://app.example.com or http://localhost:5173 (no path, no trailing /)"
                )

    def _bound(self, name: str, op: Literal[">", ">="], low: float) -> tuple[bool, str]:
        """Whether setting ``name`` is ``op`` (``>`` or ``>=``) ``low``, and the error if not."""
        value = getattr(self, name)
        return (
            value > low if op == ">" else value >= low,
            f"{PREFIX}{name.upper()} must be {op} {low}",
        )

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """``MEMVAULT_CORS_ORIGINS`` as a tuple of origins (``("*",)`` for any)."""
        return tuple(origin.strip() for origin in self.cors_origins.split(",") if origin.strip())

    def _metrics_networks(self) -> list[IPv4Network | IPv6Network]:
        entries = [entry.strip() for entry in self.metrics_allow.split(",") if entry.strip()]
        if entries == ["none"]:
            return []
        try:
            return [ipaddress.ip_network(entry, strict=False) for entry in entries]
        except ValueError as exc:
            raise SettingsError(
                f"MEMVAULT_METRICS_ALLOW: {exc}; give addresses or networks such as"
                " 127.0.0.1,10.0.0.0/8, or none"
            ) from None

    def metrics_allowed(self, host: str) -> bool:
        """Whether a client at ``host`` may read ``/metrics`` without an admin key."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
        return any(address in network for network in self._metrics_networks())

    @property
    def embedded(self) -> bool:
        """True when no MongoDB URI is configured and the embedded engine serves the data."""
        return self.mongodb_uri is None


def _parse(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(raw)
            return lowered in {"1", "true", "yes", "on"}
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


def unknown_variables(env: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """Each ``MEMVAULT_*`` variable of ``env`` (default ``os.environ``) that nothing reads, with
    the known name nearest to it (None when none is near): a typo would be silently ignored."""
    env = os.environ if env is None else env
    known = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)} | OTHER_VARIABLES
    suffixes = {name.removeprefix(PREFIX): name for name in known}
    found = []
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in known:
            near = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1)
            found.append((name, suffixes[near[0]] if near else None))
    return found
