"""Persisted queries (Apollo's automatic persisted queries, and trusted documents): a request
naming a document by ``extensions.persistedQuery.sha256Hash`` becomes a plain request with the
stored document, before either HTTP path (``app/http/view.py``) sees it.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from graphql import GraphQLError, specified_rules, validate

from memvault.db.persisted import find_query, query_hash, store_query
from memvault.errors import BadRequest, PersistedQueryNotAllowed, PersistedQueryNotFound
from memvault.schema._upstream import graphql_schema
from memvault.schema.limits import parse_limited, validation_rules

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request

    from memvault.config import Settings
    from memvault.db.records import Database
    from memvault.errors import MemvaultError
    from memvault.schema import MemvaultSchema

log = logging.getLogger("memvault")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
CACHE_SIZE = 1000  # documents kept in each process, in front of the collection


def document_errors(schema: MemvaultSchema, query: str, settings: Settings) -> list[str]:
    """Why ``query`` would not run (it does not parse or validate, limits included); empty when
    it would: only such documents are stored."""
    try:
        document = parse_limited(query, settings)
    except GraphQLError as exc:
        return [exc.message]
    rules = [*specified_rules, *validation_rules(settings)]
    return [error.message for error in validate(graphql_schema(schema), document, rules)]


class PersistedQueries:
    """Resolves persisted queries for one app: the shared collection, behind a small cache of
    the documents this process has seen (a stored document never changes)."""

    def __init__(self, schema: MemvaultSchema, decode: Callable[[str | bytes], object]) -> None:
        self.schema = schema
        self.decode = decode
        self.cache: OrderedDict[str, str] = OrderedDict()
        self.hits = 0
        self.misses = 0  # lookups that read the collection

    def cache_counts(self) -> tuple[int, int]:
        """(hits, misses) of the cache in front of the collection so far (``/metrics``)."""
        return self.hits, self.misses

    async def lookup(self, db: Database, sha256: str) -> str | None:
        query = self.cache.get(sha256)
        if query is None:
            self.misses += 1
            query = await find_query(db, sha256)
            if query is None:
                return None
            self.remember(sha256, query)
        else:
            self.hits += 1
            self.cache.move_to_end(sha256)
        return query

    def remember(self, sha256: str, query: str) -> None:
        self.cache[sha256] = query
        if len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)

    async def register(self, db: Database, query: str, settings: Settings) -> None:
        """Store ``query`` (an APQ registration) if it parses and validates, within the bound."""
        if document_errors(self.schema, query, settings):
            return  # it runs, and fails, as any such document; storing it would serve nothing
        if await store_query(db, query, limit=settings.max_persisted_queries):
            self.remember(query_hash(query), query)
        else:
            log.warning(
                "persisted query not stored: MEMVAULT_MAX_PERSISTED_QUERIES (%d) reached",
                settings.max_persisted_queries,
            )

    async def resolve(
        self, request: Request, payload: bytes, db: Database, settings: Settings
    ) -> bytes | tuple[int, MemvaultError]:
        """The request's body with the stored document in it (a GET's query string is rewritten
        in place), or the status and error to refuse it with. Requests that are not JSON
        objects pass unchanged: the view refuses them."""
        data: dict[str, Any] | None = None
        if request.method == "GET":
            params = request.query_params
            query: object = params.get("query")
            raw = params.get("extensions")
            try:
                extensions = None if raw is None else self.decode(raw)
            except ValueError:
                return 400, BadRequest("extensions must be a JSON object")
        else:
            try:
                decoded = self.decode(payload)
            except ValueError:
                return payload
            if type(decoded) is not dict:
                return payload
            data = decoded
            query, extensions = data.get("query"), data.get("extensions")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        has_query = isinstance(query, str) and bool(query)
        if persisted is None:
            if (
                settings.persisted_only
                and isinstance(query, str)
                and has_query
                and await self.lookup(db, query_hash(query)) is None
            ):
                return 400, not_allowed()
            return payload
        sha256 = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        if (
            not isinstance(persisted, dict)
            or persisted.get("version") != 1
            or not isinstance(sha256, str)
            or not SHA256_HEX.fullmatch(sha256.lower())
        ):
            return 400, BadRequest(
                "extensions.persistedQuery must be {version: 1, sha256Hash: <SHA-256 hex>}"
            )
        sha256 = sha256.lower()
        if isinstance(query, str) and has_query:
            if query_hash(query) != sha256:
                return 400, BadRequest("provided sha does not match query")
            if settings.persisted_only:
                if await self.lookup(db, sha256) is None:
                    return 400, not_allowed()
            else:
                await self.register(db, query, settings)
            return payload
        stored = await self.lookup(db, sha256)
        if stored is None:
            return 200, PersistedQueryNotFound("PersistedQueryNotFound")
        if data is None:  # GET: the stored document in the query string, as if sent there
            items = [(k, v) for k, v in request.query_params.multi_items() if k != "query"]
            request.scope["query_string"] = urlencode([*items, ("query", stored)]).encode()
            return payload
        data["query"] = stored
        return json.dumps(data).encode()


def not_allowed() -> PersistedQueryNotAllowed:
    return PersistedQueryNotAllowed(
        "only registered documents run here (MEMVAULT_PERSISTED_ONLY): register it with"
        " `memvault documents add`"
    )
