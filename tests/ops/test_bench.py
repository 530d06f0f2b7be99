"""``memvault bench`` runs end to end and reports every figure the issue names (no thresholds:
speed targets live in the benchmark's own output, never in a timed test)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from importlib import metadata
from typing import Any

import pytest

from memvault.bench import WireClient, render_table
from memvault.bench_live import check_order

LIVE_FIELDS = {
    "subscribers", "sessions", "writers", "writes", "write_errors", "events", "events_per_s",
    "p50_ms", "p99_ms", "p50_from_start_ms", "p99_from_start_ms", "cpu_ms_per_event", "lost",
    "repeated", "out_of_order", "unexpected",
}  # fmt: skip
FIELDS = {
    "requests", "errors", "rps", "p50_ms", "p99_ms", "db_commands_per_request",
    "cpu_ms_per_request", "floor_p50_ms", "ratio_p50",
}  # fmt: skip


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU time is read from /proc")
@pytest.mark.slow
def test_bench_reports_every_scenario_as_json() -> None:
    command = [
        sys.executable, "-m", "memvault", "bench", "--json", "--duration", "0.5", "--concurrency", "2",
        "--users", "2", "--sessions-per-user", "2", "--memories-per-session", "3", "--growth", "30",
        "--subscribers", "4", "--subscribed-sessions", "2", "--search-memories", "1000",
    ]  # fmt: skip
    report = run_bench(command)
    assert set(report) >= {"machine", "engine", "scenarios", "subscribe", "growth"}
    assert set(report["scenarios"]) == {
        "write", "write_concurrent", "window", "nested", "listing",
        "search_rare", "search_common", "search_phrase", "search_user",
    }  # fmt: skip
    for name, figures in report["scenarios"].items():
        assert set(figures) >= FIELDS, name
        assert figures["requests"] > 0, name
        assert figures["errors"] == 0, (name, figures.get("first_error"))
        assert figures["floor_p50_ms"] > 0, name
        assert figures["db_commands_per_request"] > 0, name
    assert report["scenarios"]["nested"]["db_commands_per_request"] <= 4
    # the write path's three commands (plus, rarely, the server's own: the key cache's refresh)
    assert 3 <= report["scenarios"]["write"]["db_commands_per_request"] < 3.5
    for name in ("write", "write_concurrent"):  # the bare floor is measured beside the floor
        assert report["scenarios"][name]["bare_floor_p50_ms"] > 0, name
    assert report["scenarios"]["write_concurrent"]["bare_floor_rps"] > 0
    assert report["growth"][0]["memories"] == 30
    assert report["subscribe"]["events"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU time is read from /proc")
def test_bench_subscribe_delivers_every_write_once_in_order() -> None:
    command = [
        sys.executable, "-m", "memvault", "bench", "--json", "--only", "subscribe",
        "--duration", "1", "--subscribers", "5", "--subscribed-sessions", "2", "--writers", "2",
        "--users", "1", "--sessions-per-user", "1", "--memories-per-session", "1",
    ]  # fmt: skip
    report = run_bench(command)
    assert report["scenarios"] == {}
    live = report["subscribe"]
    assert set(live) >= LIVE_FIELDS
    assert (live["subscribers"], live["sessions"], live["writers"]) == (5, 2, 2)
    assert live["lost"] == live["repeated"] == live["out_of_order"] == live["unexpected"] == 0
    assert live["write_errors"] == 0, live.get("first_error")
    # Three subscribers of one session, two of the other: each write reaches two or three.
    assert 2 * live["writes"] <= live["events"] <= 3 * live["writes"]
    assert live["writes"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU time is read from /proc")
@pytest.mark.slow
def test_bench_compares_langchain_on_the_same_engine() -> None:
    """Issue 19 item 4: LangChain's MongoDBChatMessageHistory beside memvault in one run."""
    command = [
        sys.executable, "-m", "memvault", "bench", "--json", "--only", "window", "--compare-langchain",
        "--duration", "0.5", "--concurrency", "2", "--growth", "30,45",
        "--users", "1", "--sessions-per-user", "1", "--memories-per-session", "2",
    ]  # fmt: skip
    report = run_bench(command)
    section = report["langchain"]
    assert section["engine"] == report["engine"]
    assert section["versions"] == {
        name: metadata.version(name) for name in ("langchain-mongodb", "langchain-core")
    }
    assert "SessionId" in section["storage"]
    writes = [section["add_message"], section["add_message_concurrent"]]
    assert [entry["clients"] for entry in writes] == [1, 2]
    # 0.12.1 can read the last N alone (history_size): the windows report that read apart
    sides = [(entry, ("langchain",)) for entry in writes] + [
        (entry, ("langchain", "langchain_history_size")) for entry in section["window"]
    ]
    for entry, theirs in sides:
        assert set(entry) & {"memvault", "langchain", "langchain_history_size"} == {
            "memvault",
            *theirs,
        }
        for side in ("memvault", *theirs):
            figures = entry[side]
            assert figures["requests"] > 0, (side, figures)
            assert figures["errors"] == 0, (side, figures.get("first_error"))
            assert figures["per_s"] > 0
            assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        for side in theirs:
            suffix = side.removeprefix("langchain")
            assert entry[f"ratio_p50{suffix}"] > 0
            assert entry[f"ratio_per_s{suffix}"] > 0
        assert entry["memvault"]["db_commands_per_request"] > 0
    # What each side wrote is what the database holds (counted apart from LangChain's client)
    for entry in writes:
        assert entry["stored"] == entry["written"]
        assert entry["written"]["langchain"] >= entry["langchain"]["requests"]
    for entry, size, held in zip(section["window"], (30, 45), (30, 75), strict=True):
        assert entry["messages"] == size
        assert entry["stored"] == {"memvault": size, "langchain": size}
        assert entry["collection_messages"] == held  # the windows are measured before the writes
        assert entry["same_messages"] is True  # both sides answered the same 20, in order

    table = render_table(report)
    assert "LangChain's MongoDBChatMessageHistory (langchain-mongodb " in table
    assert "ratio memvault / LangChain" in table
    for label in ("add_message, 1 client(s)", "add_message, 2 client(s)",
                  "last 20 of 45, messages[-20:]", "last 20 of 45, history_size=20"):  # fmt: skip
        assert label in table
    assert "its collection held 30 / 75 messages" in table


# A Python without langchain-mongodb: the import fails as it does when the package is absent.
WITHOUT_LANGCHAIN = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "langchain_mongodb":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from memvault.cli import main

main(sys.argv[1:], prog_name="memvault")
"""


def test_compare_langchain_without_the_package_names_what_to_install() -> None:
    command = [sys.executable, "-c", WITHOUT_LANGCHAIN, "bench", "--compare-langchain", "--only", "window"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: --compare-langchain needs langchain-mongodb (No module named 'langchain_mongodb'):"
        " pip install 'memvault[langchain]'\n"
    )


def test_bench_rejects_an_unknown_scenario() -> None:
    command = [sys.executable, "-m", "memvault", "bench", "--only", "subscribe,nope"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown scenario(s) nope" in result.stderr


def test_delivery_check_counts_each_kind_of_wrong() -> None:
    assert check_order([3, 4, 5], [3, 4, 5]) == dict.fromkeys(
        ("lost", "repeated", "out_of_order", "unexpected"), 0
    )
    assert check_order([3, 5, 4, 4, 9], [3, 4, 5, 6]) == {
        "lost": 1, "repeated": 1, "out_of_order": 1, "unexpected": 1,
    }  # fmt: skip


def run_bench(command: list[str]) -> dict[str, Any]:
    uri = os.environ.get("MEMVAULT_MONGODB_URI")
    if uri:
        command = [*command, "--mongodb-uri", uri]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_bench_table_for_people() -> None:
    row = dict.fromkeys(FIELDS, 1.0) | {"requests": 3, "errors": 0}
    report = {
        "machine": {"cpus": 2, "python": "3.11"}, "engine": "nx-27017 0.8.1 (embedded)",
        "dataset": {"users": 1}, "duration_s": 1.0, "concurrency": 4,
        "scenarios": {"window": row},
        "subscribe": dict.fromkeys(LIVE_FIELDS, 1) | {"p50_ms": 12.5},
        "growth": [{"memories": 100, "p50_ms": 1.0, "p99_ms": 2.0,
                                                   "floor_p50_ms": 0.5, "ratio_p50": 2.0}],
    }  # fmt: skip
    table = render_table(report)
    assert "window" in table
    assert "floor p50 ms" in table
    assert "cpu ms/req" in table
    assert "as one session grows" in table
    assert "1 subscribers of 1 sessions" in table
    assert "12.50" in table


async def test_wire_client_replaces_connections_the_server_closed() -> None:
    """The bench's HTTP client: keep-alive, and a connection closed while idle is not an error."""
    served: list[bytes] = []

    async def one_answer_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        served.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # as uvicorn does with a connection idle past its keep-alive timeout

    server = await asyncio.start_server(one_answer_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = WireClient("127.0.0.1", port)
    try:
        assert await client.post_json("/graphql", b"{}") == (200, b"ok")
        await asyncio.sleep(0.1)
        assert await client.post_json("/graphql", b'{"a":1}') == (200, b"ok")
        assert served == [b"{}", b'{"a":1}']
    finally:
        client.close()
        server.close()
        await server.wait_closed()
