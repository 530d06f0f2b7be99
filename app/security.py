"""Who is calling: API keys to projects and scopes, and the open default mode."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from memvault.db import api_keys
from memvault.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from memvault.db.records import Database

log = logging.getLogger("memvault")

DEFAULT_PROJECT = "default"
SCOPES = ("read", "write", "admin")  # each includes the ones before it
# Longest Authorization value read; a key is 59 characters. Header values are Latin-1: one
# character is one byte.
MAX_AUTHORIZATION_LENGTH = 4096
# Cached lookups, by the key's hash: found keys, and keys found in no active record (anyone can
# make those, so they are few, and never evict the found ones).
KNOWN_KEYS_CACHED = 10_000
UNKNOWN_KEYS_CACHED = 1_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    project_id: str
    scope: str
    key_id: str | None = None

    def require(self, scope: str, *, action: str) -> None:
        """FORBIDDEN unless this caller's scope includes ``scope``."""
        if SCOPES.index(self.scope) < SCOPES.index(scope):
            raise Forbidden(
                f"{action} needs a key with scope {scope!r}; this key has {self.scope!r}"
            )


OPEN = Principal(project_id=DEFAULT_PROJECT, scope="admin")


def key_from_header(authorization: str | None) -> str | None:
    """The key in ``Authorization: Bearer <key>`` or ``Authorization: Api-Key <key>``."""
    if not authorization:
        return None
    if len(authorization) > MAX_AUTHORIZATION_LENGTH:
        raise Unauthenticated(f"Authorization is longer than {MAX_AUTHORIZATION_LENGTH} bytes")
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() not in {"bearer", "api-key"} or not key.strip():
        raise Unauthenticated("Authorization must be 'Bearer <key>' or 'Api-Key <key>'")
    return key.strip()


class Authenticator:
    """Resolves keys to principals, caching answers for ``cache_seconds`` (revocation and the
    first key's creation take effect within that time).

    ``required`` (``MEMVAULT_AUTH=required``): every request needs a key. Otherwise the store's
    keys decide (:meth:`keys_exist`); ``reopens`` (``MEMVAULT_AUTH=open``) lets a store whose
    last key was revoked run open again.
    """

    def __init__(
        self, db: Database, *, required: bool, cache_seconds: float, reopens: bool = False
    ) -> None:
        self.db = db
        self.required = required
        self.reopens = reopens
        self.cache_seconds = cache_seconds
        self._known: dict[str, tuple[float, Principal]] = {}
        self._unknown: dict[str, float] = {}
        self._any_key: tuple[float, bool] | None = None
        self._recorded = False  # the store's record that keys are in force is known to exist
        self.hits = 0  # key lookups answered from the cache (found or not)
        self.misses = 0  # key lookups that read the database

    def cache_counts(self) -> tuple[int, int]:
        """(hits, misses) of the key cache so far (``/metrics``)."""
        return self.hits, self.misses

    def _fresh(self, stamp: float) -> bool:
        return time.monotonic() - stamp < self.cache_seconds

    async def keys_exist(self) -> bool:
        """Whether the store's keys make every request need one: an active key exists or,
        unless ``reopens``, one ever did (a store closed by its first key stays closed). A
        change is logged when noticed."""
        previous = self._any_key
        if previous is not None and self._fresh(previous[0]):
            return previous[1]
        in_force = await api_keys.keys_in_force(
            self.db, reopens=self.reopens, record=not self._recorded
        )
        self._recorded = self._recorded or in_force
        self._any_key = (time.monotonic(), in_force)
        if previous is not None and previous[1] != in_force:
            _log_switch(in_force)
        return in_force

    async def principal(self, authorization: str | None) -> Principal:
        """The caller; UNAUTHENTICATED for a bad key, or for none when keys are needed."""
        key = key_from_header(authorization)
        if key is None:
            if self.required or await self.keys_exist():
                raise Unauthenticated("this server needs an API key: Authorization: Bearer <key>")
            return OPEN
        key_hash = api_keys.hash_key(key)
        known = self._known.get(key_hash)
        if known is not None and self._fresh(known[0]):
            self.hits += 1
            return known[1]
        unknown = self._unknown.get(key_hash)
        if unknown is None or not self._fresh(unknown):
            self.misses += 1
            doc = await api_keys.find_active_key(self.db, key_hash=key_hash)
            if doc is not None:
                found = Principal(
                    project_id=doc["project_id"], scope=doc["scope"], key_id=doc["key_id"]
                )
                self._unknown.pop(key_hash, None)
                _remember(self._known, key_hash, (time.monotonic(), found), KNOWN_KEYS_CACHED)
                return found
            self._known.pop(key_hash, None)
            _remember(self._unknown, key_hash, time.monotonic(), UNKNOWN_KEYS_CACHED)
        else:
            self.hits += 1
        raise Unauthenticated("unknown or revoked API key")


def _log_switch(keys_needed: bool) -> None:
    if keys_needed:
        log.warning(
            "auth: an API key exists now, so every request needs one from now on (also once "
            "the keys are revoked, unless MEMVAULT_AUTH=open); data written without a key is "
            "in project %r: only a key of that project reaches it",
            DEFAULT_PROJECT,
        )
    else:
        log.warning(
            "auth: OPEN again. No active API key is left and MEMVAULT_AUTH=open: requests "
            "without a key read and write project %r",
            DEFAULT_PROJECT,
        )


def _remember(cache: dict[str, T], key: str, value: T, limit: int) -> None:
    """Store ``value``; when ``cache`` is full, its oldest entry goes."""
    cache.pop(key, None)
    if len(cache) >= limit:
        del cache[next(iter(cache))]
    cache[key] = value
