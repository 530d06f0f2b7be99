"""GraphiQL served by memvault itself: the page on ``GET /graphql`` (Accept: text/html) and its
assets under :data:`STATIC_PATH`, all from this package (``static/graphiql/``, with their
licences), so that it works offline and behind a strict Content-Security-Policy."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    import os

    from starlette.responses import Response
    from starlette.types import Scope

STATIC_PATH = "/graphiql/static"
STATIC_DIR = Path(__file__).parent / "static" / "graphiql"
# A day, then revalidated against the ETag: the file names carry no version, so an upgrade of
# memvault reaches a browser within a day at worst.
CACHE_CONTROL = "public, max-age=86400"
# Nothing inline and no other host: every script and style is one of our files; the CSS embeds
# its fonts as data: URLs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'; object-src 'none'"
)
HINT = (
    '<p id="memvault-hint">This server requires an API key: in the Headers tab below, enter '
    "<code>{&quot;Authorization&quot;: &quot;Bearer &lt;your key&gt;&quot;}</code>.</p>"
)
_TEMPLATE = (Path(__file__).parent / "graphiql.html").read_text(encoding="utf-8")


class CachedStaticFiles(StaticFiles):
    """Starlette's static files (ETag, Last-Modified, 304s) with a ``Cache-Control`` header."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = CACHE_CONTROL
        return response


def static_files() -> CachedStaticFiles:
    return CachedStaticFiles(directory=STATIC_DIR)


def page(*, keys_required: bool) -> HTMLResponse:
    """The GraphiQL page; with ``keys_required``, a line saying where the API key goes."""
    body = _TEMPLATE.format(
        static=html.escape(STATIC_PATH),
        keys_required="true" if keys_required else "false",
        hint=HINT if keys_required else "",
    )
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
    return HTMLResponse(body, headers=headers)
