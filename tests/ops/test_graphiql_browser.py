"""GraphiQL as a person uses it, in a real browser with the network cut off (issue 15, item 2):
Debian's headless Chromium, driven by Playwright, opens ``GET /graphql`` of a live server with
every request to another host aborted, types a query, runs it and finds the result."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from tests.support.server import live_server

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Locator, Page, Route

    from tests.support.server import LiveServer

CHROMIUM = next(
    (
        path
        for path in ("/usr/bin/chromium", shutil.which("chromium"))
        if path and Path(path).exists()
    ),
    None,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium binary (apt-get install chromium; .ci/run installs it in CI)",
    ),
]


@pytest.fixture(params=["open", "required"])
def server(mongo_uri: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A live server with GraphiQL on, its API keys optional or required (``MEMVAULT_AUTH``)."""
    auth = request.param
    with live_server(mongo_uri, tmp_path, MEMVAULT_GRAPHIQL="true", MEMVAULT_AUTH=auth) as live:
        yield live


@pytest.fixture
def page(server: LiveServer) -> Iterator[tuple[Page, list[str], list[str]]]:
    """A page whose requests to any host but the server's are aborted and recorded, with the
    page's console errors (a CSP violation shows there)."""
    ours = urlsplit(server.url).netloc
    foreign: list[str] = []
    errors: list[str] = []

    def cut_off(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).netloc == ours:
            route.continue_()
        else:
            foreign.append(url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.route("**/*", cut_off)
            tab = context.new_page()
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            yield tab, foreign, errors
        finally:
            browser.close()


def create_key(server: LiveServer) -> str:
    created = subprocess.run(
        [sys.executable, "-m", "memvault", "keys", "create", "--project", "browser"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.splitlines()[-1]


def replace_text(tab: Page, editor: Locator, text: str) -> None:
    """Type ``text`` into a CodeMirror editor of the page, as a person would, over what it holds;
    the editor closes brackets and quotes itself, so ``text`` leaves the last ones out."""
    editor.click()
    tab.keyboard.press("Control+A")
    tab.keyboard.press("Delete")
    tab.keyboard.type(text)


def test_graphiql_runs_a_query_with_the_network_cut_off(
    server: LiveServer, page: tuple[Page, list[str], list[str]], tmp_path: Path
) -> None:
    """With ``MEMVAULT_AUTH=required`` the page says where the key goes and the Headers tab is
    open: a person types ``{"Authorization": "Bearer <key>"}`` there, and the query runs."""
    tab, foreign, errors = page
    keys_required = server.env["MEMVAULT_AUTH"] == "required"
    tab.goto(f"{server.url}/graphql", wait_until="load")
    editor = tab.locator(".graphiql-query-editor .CodeMirror")
    editor.wait_for(timeout=30_000)
    if keys_required:
        hint = tab.locator("#memvault-hint")
        assert '{"Authorization": "Bearer <your key>"}' in hint.inner_text()
        headers = tab.locator(".graphiql-editor-tool .CodeMirror").last
        headers.wait_for(timeout=30_000)
        replace_text(tab, headers, '{"Authorization": "Bearer ' + create_key(server))
    # The schema was introspected: the docs explorer lists the root types.
    tab.locator("button[aria-label='Show Documentation Explorer']").click()
    root_types = tab.get_by_text("Root Types")
    for _ in range(30):  # with a key typed in: fetched again once GraphiQL took the headers in
        if keys_required:  # (it debounces edits)
            tab.locator("button[aria-label='Re-fetch GraphQL schema']").click()
        try:
            root_types.wait_for(timeout=1_000)
            break
        except PlaywrightTimeout:
            continue
    assert root_types.is_visible()

    replace_text(tab, editor, "{ __typename ")  # the editor closes the brace itself
    tab.locator("button.graphiql-execute-button").click()
    result = tab.locator(".graphiql-response .CodeMirror")
    result.get_by_text('"Query"').wait_for(timeout=30_000)

    screenshot = tmp_path / f"graphiql-{server.env['MEMVAULT_AUTH']}.png"
    tab.screenshot(path=str(screenshot))
    print(f"GraphiQL screenshot: {screenshot}")
    assert '"__typename": "Query"' in result.inner_text().replace("\u00a0", " ")
    assert foreign == []
    # Before the key is typed in, the schema fetch is refused: 401, as the hint says.
    refused = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    assert [e for e in errors if not (keys_required and e == refused)] == []
