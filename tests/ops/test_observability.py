"""Issue 17, items 5 and 6: ``/metrics`` (Prometheus, parsed with prometheus_client's own
parser) after known requests, who may read it, request ids, access lines and JSON logs.

Before: ``/metrics`` served three hand-written counters (no requests, operations, latencies or
caches) to anyone, the access line had neither request id nor operation, a client's
``X-Request-Id`` was ignored and not echoed, and logs were text only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memvault import metrics as metrics_module
from memvault.config import Settings, SettingsError
from memvault.db import api_keys
from memvault.main import create_app
from memvault.metrics import Metrics
from tests.support.asgi import running
from tests.support.server import uid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from pymongo.asynchronous.database import AsyncDatabase

    from tests.support.asgi import Served
    from tests.support.server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana-dashboard.json"
CREATE = "mutation Make($id: String!) { createUser(input: {userId: $id}) { userId } }"
FIND = "query Find($id: String!) { user(userId: $id) { userId } }"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@contextlib.asynccontextmanager
async def app_client(
    settings: Settings, client: Any = None, address: str = "127.0.0.1"
) -> AsyncIterator[tuple[httpx.AsyncClient, Served]]:
    """The app in process (with ``client``, or its own as ``memvault serve`` has), called from
    ``address``."""
    app = create_app(settings, client=client)
    async with running(app) as served:
        transport = httpx.ASGITransport(app=served, client=(address, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://memvault.test") as http:
            yield http, served


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


async def post(http: httpx.AsyncClient, query: str, **variables: Any) -> httpx.Response:
    return await http.post("/graphql", json={"query": query, "variables": variables})


# ---------------------------------------------------------------------------- item 5: metrics


async def test_metrics_count_requests_by_operation_type_and_code(
    settings: Settings, mongo_uri: str, fast_path: bool
) -> None:
    own = dataclasses.replace(settings, mongodb_uri=mongo_uri)  # its own client: DB metrics too
    async with app_client(own) as (http, _):
        user = uid("u")
        for _ in range(2):
            await post(http, CREATE, id=uid("u"))
        await post(http, CREATE, id=user)
        duplicate = await post(http, CREATE, id=user)
        assert duplicate.json()["errors"][0]["extensions"]["code"] == "ALREADY_EXISTS"
        await post(http, "{ user(userId: 1 }")  # does not parse: no operation ran
        await post(http, '{ user(userId: "nobody") { userId } }')  # anonymous
        before = await scrape(http)
        found = await post(http, FIND, id=user)
        assert found.json() == {"data": {"user": {"userId": user}}}
        after = await scrape(http)

    requests = "memvault_requests_total"
    assert value(after, requests, operation="Make", type="mutation", code="OK") == 3
    assert value(after, requests, operation="Make", type="mutation", code="ALREADY_EXISTS") == 1
    assert (
        value(after, requests, operation="(none)", type="(none)", code="GRAPHQL_PARSE_FAILED") == 1
    )
    assert value(after, requests, operation="(anonymous)", type="query", code="OK") == 1
    assert value(after, requests, operation="Find", type="query", code="OK") == 1
    assert value(after, "memvault_request_duration_seconds_count", operation="Make") == 4
    assert (
        value(after, "memvault_request_duration_seconds_bucket", operation="Make", le="+Inf") == 4
    )
    assert value(after, "memvault_response_size_bytes_count", operation="Find") == 1
    assert value(after, "memvault_response_size_bytes_sum", operation="Find") == len(found.content)
    assert value(after, "memvault_requests_in_flight") == 0
    assert value(after, "memvault_engine_restarts_total") == 0
    assert value(after, "memvault_subscriptions_open") == 0
    # The one query between the two scrapes: a count of the API keys and a read of the record
    # that keys were ever in force (the test's settings cache no lookups), and the user's read,
    # each timed under its command name
    commands = {
        dict(labels)["command"]: count - before.get((name, labels), 0)
        for (name, labels), count in after.items()
        if name == "memvault_db_command_duration_seconds_count"
    }
    assert {command: n for command, n in commands.items() if n} == {"count": 1, "find": 2}
    assert "insert" in {dict(labels).get("command") for _, labels in before}
    if fast_path:  # the document store: Make parsed once, then found 3 times
        hits = value(after, "memvault_cache_lookups_total", cache="documents", result="hit")
        misses = value(after, "memvault_cache_lookups_total", cache="documents", result="miss")
        assert (hits, misses) == (3, 4)  # misses: Make, the bad one, the anonymous one, Find


async def test_key_and_persisted_query_caches_report_hits_and_misses(
    settings: Settings, mongo_client: Any, db: AsyncDatabase[dict[str, Any]]
) -> None:
    cached = dataclasses.replace(settings, auth_cache_seconds=60)
    _, key = await api_keys.create_key(db, project_id="acme", scope="admin")
    headers = {"Authorization": f"Bearer {key}"}
    async with app_client(cached, mongo_client) as (http, _):
        for _ in range(3):
            response = await http.post(
                "/graphql", json={"query": "{ __typename }"}, headers=headers
            )
            assert response.status_code == 200
        sha = "0" * 64
        extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha}}
        for _ in range(2):  # not stored: a miss each time (only found documents are kept)
            await http.post("/graphql", json={"extensions": extensions}, headers=headers)
        found = samples((await http.get("/metrics", headers=headers)).text)
    lookups = "memvault_cache_lookups_total"
    # 5 requests (the scrape, from loopback, looks up no key): the first read it from the database
    assert value(found, lookups, cache="api_keys", result="miss") == 1
    assert value(found, lookups, cache="api_keys", result="hit") == 4
    assert value(found, lookups, cache="persisted_queries", result="miss") == 2
    assert value(found, lookups, cache="persisted_queries", result="hit") == 0


async def test_each_app_has_its_own_registry(settings: Settings, mongo_client: Any) -> None:
    async with (
        app_client(settings, mongo_client) as (first, _),
        app_client(settings, mongo_client) as (second, _),
    ):
        for _ in range(3):
            await post(first, FIND, id="nobody")
        await post(second, FIND, id="nobody")
        counted = [
            value(
                await scrape(http),
                "memvault_requests_total",
                operation="Find",
                type="query",
                code="OK",
            )
            for http in (first, second)
        ]
    assert counted == [3, 1]


async def test_subscriptions_open_follows_the_subscriptions(mongo_uri: str, tmp_path: Path) -> None:
    from tests.support.live import MEMORY_ADDED, LiveClient
    from tests.support.server import live_server

    def open_now(server: LiveServer) -> float:
        return value(
            samples(httpx.get(server.url + "/metrics").text), "memvault_subscriptions_open"
        )

    with live_server(mongo_uri, tmp_path) as server:
        session = uid("s")
        server.ok(
            "mutation($s: String!) { addMemories(input: {sessionId: $s,"
            ' memories: [{roleType: USER, content: "x"}]}) { session { sessionId } } }',
            {"s": session},
        )
        async with LiveClient.connect(server.url) as live:
            first = await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
            await live.subscribe(MEMORY_ADDED, {"sessionId": session, "afterSeq": 0})
            assert len(await live.memories(first, 1)) == 1
            during = open_now(server)
            await live.complete(first)
            await asyncio.sleep(0.3)
            after_one = open_now(server)
        await asyncio.sleep(0.3)
        after_all = open_now(server)
    assert (during, after_one, after_all) == (2, 1, 0)


def test_operation_names_past_the_bound_share_one_label(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_OPERATIONS", 2)
    metrics = Metrics()
    for name in ("A", "B", "C", "D", "A"):
        metrics.request(name, "query", "OK", 0.01, 10)
    found = samples(metrics.render().decode())
    counts = {
        dict(labels)["operation"]: count
        for (name, labels), count in found.items()
        if name == "memvault_requests_total"
    }
    assert counts == {"A": 2, "B": 1, "(other)": 2}


def test_database_commands_are_timed_and_failures_counted_by_name() -> None:
    metrics = Metrics()
    metrics.db_command("find", 0.002, failed=False)
    metrics.db_command("find", 0.3, failed=True)
    metrics.db_command("insert", 0.0004, failed=False)
    found = samples(metrics.render().decode())
    seconds = "memvault_db_command_duration_seconds"
    assert value(found, f"{seconds}_count", command="find") == 2
    assert value(found, f"{seconds}_bucket", command="find", le="0.0025") == 1
    assert value(found, f"{seconds}_count", command="insert") == 1
    assert value(found, "memvault_db_command_failures_total", command="find") == 1
    assert ("memvault_db_command_failures_total", frozenset({("command", "insert")})) not in found


# ------------------------------------------------------------- item 5: who may read /metrics


async def test_metrics_are_open_while_the_service_is(settings: Settings, mongo_client: Any) -> None:
    async with app_client(settings, mongo_client, address="203.0.113.7") as (http, _):
        assert (await http.get("/metrics")).status_code == 200


async def test_metrics_need_an_admin_key_or_an_allowed_address_once_keys_exist(
    settings: Settings, mongo_client: Any, db: AsyncDatabase[dict[str, Any]]
) -> None:
    _, admin = await api_keys.create_key(db, project_id="acme", scope="admin")
    _, writer = await api_keys.create_key(db, project_id="acme", scope="write")
    async with app_client(settings, mongo_client, address="203.0.113.7") as (http, _):
        anonymous = await http.get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        bad = await http.get("/metrics", headers={"Authorization": "Bearer mv_nope"})
        assert bad.status_code == 401
        written = await http.get("/metrics", headers={"Authorization": f"Bearer {writer}"})
        assert written.status_code == 403
        assert written.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "admin" in written.json()["errors"][0]["message"]
        allowed = await http.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
        assert allowed.status_code == 200
        assert "memvault_requests_total" in allowed.text
    async with app_client(settings, mongo_client) as (local, _):  # loopback: the default list
        assert (await local.get("/metrics")).status_code == 200
    closed = dataclasses.replace(settings, metrics_allow="none")
    async with app_client(closed, mongo_client) as (local, _):
        assert (await local.get("/metrics")).status_code == 401
    listed = dataclasses.replace(settings, metrics_allow="10.0.0.0/8, 203.0.113.7")
    async with app_client(listed, mongo_client, address="203.0.113.7") as (http, _):
        assert (await http.get("/metrics")).status_code == 200


async def test_metrics_are_closed_from_the_start_with_auth_required(
    settings: Settings, mongo_client: Any
) -> None:
    required = dataclasses.replace(settings, auth="required")
    async with app_client(required, mongo_client, address="198.51.100.1") as (http, _):
        assert (await http.get("/metrics")).status_code == 401


def test_metrics_allow_takes_addresses_and_networks() -> None:
    settings = Settings.from_env({"MEMVAULT_METRICS_ALLOW": "10.0.0.0/8,::1"})
    assert settings.metrics_allowed("10.1.2.3")
    assert settings.metrics_allowed("::1")
    assert settings.metrics_allowed("::ffff:10.0.0.9")  # IPv4 seen through a dual-stack socket
    assert not settings.metrics_allowed("127.0.0.1")
    assert not settings.metrics_allowed("testclient")
    assert not Settings.from_env({"MEMVAULT_METRICS_ALLOW": "none"}).metrics_allowed("127.0.0.1")
    with pytest.raises(SettingsError, match="MEMVAULT_METRICS_ALLOW"):
        Settings.from_env({"MEMVAULT_METRICS_ALLOW": "localhost"})


# --------------------------------------------------------------------- item 5: the dashboard


def exposed_names() -> set[str]:
    """Every sample name /metrics can serve (each labelled metric recorded once)."""
    metrics = Metrics()
    metrics.request("Find", "query", "OK", 0.01, 100)
    metrics.db_command("find", 0.001, failed=True)
    metrics.caches["documents"] = lambda: (1, 1)
    return {name for name, _ in samples(metrics.render().decode())}


def test_the_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"]
    assert dashboard["uid"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 8
    named = {name for expr in exprs for name in re.findall(r"\bmemvault_[a-z_]+", expr)}
    exposed = exposed_names()
    assert named <= exposed, named - exposed
    # every metric family appears on some panel
    families = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in exposed}
    shown = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in named}
    assert families <= shown, families - shown


def test_the_readme_lists_every_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Observability", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(memvault_[a-z_]+)`", section))
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in exposed_names()}
    assert families == listed, families ^ listed


# ------------------------------------------------------------------ item 6: ids and logs


async def test_a_clients_request_id_is_kept_and_echoed(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="memvault.access"):
        response = await http.post(
            "/graphql",
            json={"query": FIND, "variables": {"id": "x"}},
            headers={"X-Request-Id": "trace-42.a:b"},
        )
    assert response.headers["x-request-id"] == "trace-42.a:b"
    line = next(r for r in caplog.records if r.name == "memvault.access")
    message = line.getMessage()
    assert "id=trace-42.a:b" in message
    assert "op=Find" in message
    assert '"POST /graphql HTTP/1.1" 200 OK' in message
    assert line.request_id == "trace-42.a:b"  # type: ignore[attr-defined]
    assert line.project == "default"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "given",
    ["a" * 129, "<script>alert(1)</script>", "two words", "semi;colon", "", "caf\u00e9"],
)
async def test_a_hostile_request_id_is_replaced(http: httpx.AsyncClient, given: str) -> None:
    response = await http.get("/healthz", headers={"X-Request-Id": given.encode("latin-1")})
    echoed = response.headers["x-request-id"]
    assert echoed != given
    assert re.fullmatch(r"[0-9a-f]{16}", echoed)


async def test_each_request_without_an_id_gets_a_fresh_one(http: httpx.AsyncClient) -> None:
    ids = {(await http.get("/healthz")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


async def test_a_masked_error_names_the_echoed_request_id(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("memvault.db.users.get_users", broken)
    response = await http.post(
        "/graphql",
        json={"query": FIND, "variables": {"id": "x"}},
        headers={"X-Request-Id": "req-7"},
    )
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-7"}
    assert response.headers["x-request-id"] == "req-7"


def test_log_format_is_text_or_json() -> None:
    with pytest.raises(SettingsError, match="MEMVAULT_LOG_FORMAT"):
        Settings.from_env({"MEMVAULT_LOG_FORMAT": "xml"})


@pytest.mark.slow
def test_json_logs_of_a_live_server(
    servers: Callable[..., LiveServer], serve_env: dict[str, str]
) -> None:
    server = servers({**serve_env, "MEMVAULT_LOG_FORMAT": "json"}).start()
    user = uid("u")
    made = httpx.post(
        server.url + "/graphql",
        json={"query": CREATE, "variables": {"id": user}},
        headers={"X-Request-Id": "json-log-1"},
    )
    assert made.status_code == 200
    assert made.headers["x-request-id"] == "json-log-1"
    assert server.stop() == 0
    lines = [json.loads(line) for line in server.log.splitlines() if line.strip()]
    for line in lines:
        assert {
            "time",
            "level",
            "logger",
            "message",
            "request_id",
            "operation",
            "project",
            "duration_ms",
            "code",
        } <= line.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    access = [line for line in lines if line["request_id"] == "json-log-1"]
    assert len(access) == 1, lines
    assert access[0]["logger"] == "memvault.access"
    assert access[0]["level"] == "INFO"
    assert access[0]["operation"] == "Make"
    assert access[0]["operation_type"] == "mutation"
    assert access[0]["project"] == "default"
    assert access[0]["code"] == "OK"
    assert access[0]["status"] == 200
    assert access[0]["path"] == "/graphql"
    assert isinstance(access[0]["duration_ms"], float)
    assert access[0]["duration_ms"] > 0
    assert any("memvault is ready" in line["message"] for line in lines)
