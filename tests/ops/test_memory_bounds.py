"""A served process keeps its memory bounded under huge client-chosen inputs.

Before issue 13, a `memvault serve` kept what clients sent in its caches: 100 requests of each
kind below, with 4 MB inputs, grew its RSS by 412 MB (random Authorization values, all 401),
1,101 MB (forged page cursors) and 803 MB (documents padded with a comment), and kept it.
This test sends such requests to a real process and reads its RSS from /proc.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.slow

REQUESTS = 40  # of each kind
HUGE = 3 * 1024 * 1024  # bytes of input per request: 120 MB per kind
MAX_GROWTH_MB = 100  # keeping the inputs would cost more than this for each kind alone
CURSOR_QUERY = "query($c: String) { users(first: 1, after: $c) { totalCount } }"
QUERY = {"query": "{ __typename }"}


def random_text(size: int) -> str:
    """``size`` characters of random URL-safe base64, different every time."""
    return base64.urlsafe_b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


def answer(response: httpx.Response) -> str:
    """The status and the error codes of a response, e.g. ``401 UNAUTHENTICATED``."""
    if response.headers.get("content-type") != "application/json":
        return str(response.status_code)
    errors = response.json().get("errors") or []
    return " ".join([str(response.status_code), *(e["extensions"]["code"] for e in errors)])


def bearer(size: int) -> str:
    return "Bearer " + random_text(size)


def cursor() -> str:
    """A cursor in our format (it decodes) with a key of ``HUGE`` bytes in all."""
    key = f"mv1:users:s:{random_text(HUGE * 3 // 4)}".encode()
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_huge_inputs_do_not_grow_the_servers_memory(servers: Any) -> None:
    server = servers().start()
    growth: dict[str, float] = {}
    answers: dict[str, set[str]] = {}
    with httpx.Client(base_url=server.url, timeout=60) as http:

        def post(json: dict[str, Any], **headers: str) -> httpx.Response:
            return http.post("/graphql", json=json, headers=headers)

        def phase(name: str, send: Callable[[], httpx.Response]) -> None:
            before = server.rss_mb()
            answers[name] = {answer(send()) for _ in range(REQUESTS)}
            growth[name] = server.rss_mb() - before

        for _ in range(20):  # warm: first-use allocations are not growth
            post({"query": CURSOR_QUERY, "variables": {"c": None}})
        start = server.rss_mb()
        # under any server's header limit (6 KB), then over most (3 MB: ours, or the server's 431)
        phase("6 KB Authorization", lambda: post(QUERY, authorization=bearer(6144)))
        phase("3 MB Authorization", lambda: post(QUERY, authorization=bearer(HUGE)))
        phase("3 MB cursor", lambda: post({"query": CURSOR_QUERY, "variables": {"c": cursor()}}))
        phase("3 MB document", lambda: post({"query": "{ __typename } #" + random_text(HUGE)}))
        total = server.rss_mb() - start
    report = ", ".join(f"{name} {mb:+.0f} MB" for name, mb in growth.items())
    assert all(mb < MAX_GROWTH_MB for mb in growth.values()), report
    assert total < MAX_GROWTH_MB, f"{total:+.0f} MB in all ({report})"
    huge_key = answers.pop("3 MB Authorization")
    assert all(a == "401 UNAUTHENTICATED" or a.startswith("431") for a in huge_key), huge_key
    assert answers == {
        "6 KB Authorization": {"401 UNAUTHENTICATED"},
        "3 MB cursor": {"200 BAD_USER_INPUT"},
        "3 MB document": {"200 GRAPHQL_PARSE_FAILED"},
    }
