"""Who is calling: API keys to projects and scopes, and the open default mode."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from memvault.db import api_keys
from memvault.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.db.documents import Doc

DEFAULT_PROJECT = "default"
SCOPES = ("read", "write", "admin")  # each includes the ones before it


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
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() not in {"bearer", "api-key"} or not key.strip():
        raise Unauthenticated("Authorization must be 'Bearer <key>' or 'Api-Key <key>'")
    return key.strip()


class Authenticator:
    """Resolves keys to principals, caching answers for ``cache_seconds`` (revocation and the
    first key's creation take effect within that time)."""

    def __init__(self, db: AsyncDatabase[Doc], *, required: bool, cache_seconds: float) -> None:
        self.db = db
        self.required = required
        self.cache_seconds = cache_seconds
        self._keys: dict[str, tuple[float, Principal | None]] = {}
        self._any_key: tuple[float, bool] | None = None

    def _fresh(self, stamp: float) -> bool:
        return time.monotonic() - stamp < self.cache_seconds

    async def keys_exist(self) -> bool:
        if self._any_key is None or not self._fresh(self._any_key[0]):
            self._any_key = (time.monotonic(), await api_keys.active_key_count(self.db) > 0)
        return self._any_key[1]

    async def principal(self, authorization: str | None) -> Principal:
        """The caller; UNAUTHENTICATED for a bad key, or for none when keys are needed."""
        key = key_from_header(authorization)
        if key is None:
            if self.required or await self.keys_exist():
                raise Unauthenticated("this server needs an API key: Authorization: Bearer <key>")
            return OPEN
        cached = self._keys.get(key)
        if cached is None or not self._fresh(cached[0]):
            doc = await api_keys.find_active_key(self.db, key=key)
            found = (
                Principal(project_id=doc["project_id"], scope=doc["scope"], key_id=doc["key_id"])
                if doc
                else None
            )
            if len(self._keys) > 10_000:
                self._keys.clear()
            cached = self._keys[key] = (time.monotonic(), found)
        if cached[1] is None:
            raise Unauthenticated("unknown or revoked API key")
        return cached[1]
