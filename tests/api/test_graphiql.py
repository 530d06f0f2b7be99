"""GraphiQL served by memvault itself (issue 15, item 2): the page references no other host,
every asset it loads answers from this package with cache headers, a strict CSP guards it, and
``MEMVAULT_GRAPHIQL=false`` turns page and assets off. The browser test is
``tests/ops/test_graphiql_browser.py``.

Before: Strawberry's page loaded React, GraphiQL, its CSS, js-cookie and the explorer plugin
from unpkg.com (7 assets); offline it stayed a blank "Loading..." page.
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from memvault.main import create_app
from tests.support.asgi import running

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pymongo import AsyncMongoClient

    from memvault.config import Settings

HTML = {"accept": "text/html"}
ASSETS = re.compile(r'(?:src|href)="([^"]+)"')
TYPES = {".js": "text/javascript", ".css": "text/css"}


@asynccontextmanager
async def client(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(dataclasses.replace(settings, **changes), client=mongo_client)
    async with (
        running(app) as served,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http,
    ):
        yield http


async def test_the_page_loads_only_our_own_assets_with_cache_headers(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    async with client(settings, mongo_client, graphiql=True, auth="open") as http:
        page = await http.get("/graphql", headers=HTML)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert re.findall(r"https?://", page.text) == []  # no other host, nor our own spelled out
        assert "unpkg" not in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self';" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert "<script>" not in page.text
        assert "<style" not in page.text
        assert "memvault-hint" not in page.text  # no key needed: no hint

        urls = [url for url in ASSETS.findall(page.text) if not url.startswith("data:")]
        names = {url.rsplit("/", 1)[1] for url in urls}
        assert {
            "react.production.min.js",
            "react-dom.production.min.js",
            "graphiql.min.js",
            "graphiql.min.css",
            "plugin-explorer.umd.js",  # the query explorer; the docs explorer is GraphiQL's own
            "memvault.js",
        } <= names
        for url in urls:
            assert url.startswith("/graphiql/static/"), url
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].startswith(TYPES[url[url.rindex(".") :]]), url
            assert asset.headers["cache-control"] == "public, max-age=86400", url
            etag = asset.headers["etag"]
            again = await http.get(url, headers={"if-none-match": etag})
            assert again.status_code == 304, url
            assert again.content == b""


async def test_with_keys_required_the_page_says_where_the_key_goes(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """The page itself needs no key (it runs no operation); its hint names the header."""
    async with client(settings, mongo_client, graphiql=True, auth="required") as http:
        page = await http.get("/graphql", headers=HTML)
        assert page.status_code == 200
        assert 'data-keys-required="true"' in page.text
        assert 'id="memvault-hint"' in page.text
        assert "{&quot;Authorization&quot;: &quot;Bearer &lt;your key&gt;&quot;}" in page.text
        refused = await http.post("/graphql", json={"query": "{ __typename }"})
        assert refused.status_code == 401


@pytest.mark.parametrize(
    "path", ["/graphiql/static/graphiql.min.js", "/graphiql/static/memvault.js"]
)
async def test_graphiql_off_serves_no_assets(
    settings: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], path: str
) -> None:
    async with client(settings, mongo_client, graphiql=False) as http:
        assert (await http.get(path)).status_code == 404
        assert (await http.get("/graphql", headers=HTML)).status_code == 404
