"""The client's ``timeout``: the whole call, retries included, against a server that accepts
connections and never answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from memvault.client import AsyncMemvaultClient, MemvaultClient, MemvaultConnectionError

if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUT_S = 2.0
# Four attempts of a whole timeout each (the old behaviour) take over 8 s; one timeout and the
# time to report it take a little over 2 s.
GENEROUS_S = 5.0


@contextlib.contextmanager
def hung_server() -> Iterator[str]:
    """A local server that accepts every connection, reads what is sent and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stopped = threading.Event()

    def accept() -> None:
        while not stopped.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopped.set()
        listener.close()
        for conn in held:
            conn.close()


def test_a_hung_server_fails_the_call_within_its_timeout() -> None:
    with hung_server() as url, MemvaultClient(url, timeout=TIMEOUT_S, backoff=0.01) as client:
        started = time.monotonic()
        with pytest.raises(MemvaultConnectionError) as hung:
            client.memory.get_session("s1")  # a read: retried while time is left
        elapsed = time.monotonic() - started
    assert TIMEOUT_S * 0.9 <= elapsed < GENEROUS_S, elapsed
    assert "timed out" in str(hung.value)


async def test_a_hung_server_fails_the_async_call_within_its_timeout() -> None:
    with hung_server() as url:
        async with AsyncMemvaultClient(url, timeout=TIMEOUT_S, backoff=0.01) as client:
            started = time.monotonic()
            with pytest.raises(MemvaultConnectionError) as hung:
                await client.memory.get_session("s1")
            elapsed = time.monotonic() - started
    assert TIMEOUT_S * 0.9 <= elapsed < GENEROUS_S, elapsed
    assert "timed out" in str(hung.value)
