"""A GraphQL client over any httpx client, and a snapshot of what is stored."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    from pymongo.asynchronous.database import AsyncDatabase

COLLECTIONS = ("users", "sessions", "memories")


class GraphQLClient:
    """Posts GraphQL documents; ``ok`` insists on no errors, ``error`` on exactly one."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def raw(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        # ASCII-escaped JSON, so tests can send any string, lone surrogates included
        payload = json.dumps({"query": query, "variables": variables or {}})
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        response = await self.http.post("/graphql", content=payload, headers=headers, **kwargs)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def ok(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        body = await self.raw(query, variables, **kwargs)
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def error(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        body = await self.raw(query, variables, **kwargs)
        errors = body.get("errors") or []
        assert len(errors) == 1, body
        error: dict[str, Any] = errors[0]
        return error


async def snapshot(db: AsyncDatabase[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every stored user, session and memory (``_id`` included, in ``_id`` order), to prove that
    a request changed nothing."""
    result: dict[str, list[dict[str, Any]]] = {}
    for name in COLLECTIONS:
        docs = await db[name].find({}).to_list()
        result[name] = sorted(docs, key=lambda d: str(d["_id"]))
    return result
