"""Connecting to MongoDB, and running the embedded engine (``nx-27017``) as a supervised child."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from pymongo import AsyncMongoClient, MongoClient, monitoring
from pymongo.errors import PyMongoError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.config import Settings

log = logging.getLogger("memvault.engine")

ENGINE_MODULE = "nx_27017.nx_27017"
ADDRESS_FILE = "engine.json"
HEARTBEAT_MS = 500  # the driver's minimum; see connect()


class EngineError(RuntimeError):
    """The embedded engine could not be started."""


def connect(
    uri: str, *, timeout_ms: int = 2000, event_listeners: Sequence[Any] = ()
) -> AsyncMongoClient[dict[str, Any]]:
    """An async client whose operations fail within about ``timeout_ms`` when the server is away.

    "Away" includes a server that keeps its connections open but stops answering (frozen, or a
    network that drops packets): the driver's monitor checks the server every
    ``HEARTBEAT_MS`` with a ``timeout_ms`` deadline and, when the check times out, fails the
    operations waiting on it. With the driver's default of a check every 10 s they would hang.
    """
    return AsyncMongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        heartbeatFrequencyMS=HEARTBEAT_MS,
        tz_aware=True,
        uuidRepresentation="standard",
        event_listeners=list(event_listeners),
    )


class CommandCounter(monitoring.CommandListener):
    """Counts the database commands this process sends (served at ``/metrics``)."""

    def __init__(self) -> None:
        self.started_total = 0
        self.failed_total = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.started_total += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.failed_total += 1


def engine_uri(port: int, host: str = "127.0.0.1") -> str:
    return f"mongodb://{host}:{port}/?directConnection=true"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_pid(uri: str, timeout_ms: int = 500) -> int | None:
    """The process id the server at ``uri`` reports (``buildInfo``), or None if none answers."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        info = client.admin.command("buildInfo")
        return int(info.get("pid", -1))
    except PyMongoError:
        return None
    finally:
        client.close()


def read_address(data_dir: Path) -> str | None:
    """The URI of an engine that a running server left in ``data_dir``, if it still answers."""
    try:
        info = json.loads((data_dir / ADDRESS_FILE).read_text())
        uri = str(info["uri"])
    except (OSError, ValueError, KeyError):
        return None
    return uri if server_pid(uri) is not None else None


class EmbeddedEngine:
    """One ``nx-27017`` child process serving ``data_dir`` on a loopback port.

    ``start()`` waits until the engine answers ``ping`` (or raises ``EngineError`` with the
    engine's own last log lines). ``supervise()`` restarts it, on the same port, with
    exponential backoff whenever it dies, so clients reconnect by themselves.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, start_timeout: float = 20.0):
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = False

    @property
    def uri(self) -> str:
        return engine_uri(self.port)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "engine.log"

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            ENGINE_MODULE,
            "--data-dir",
            str(self.data_dir / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--pid-file",
            str(self.data_dir / "engine.pid"),
            "--log-file",
            str(self.log_path),
        ]

    def _spawn(self) -> None:
        try:
            (self.data_dir / "db").mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as out:
                self.process = subprocess.Popen(
                    self._command(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C reaches us, and we stop the engine ourselves
                )
        except OSError as exc:
            raise EngineError(f"cannot use data directory {self.data_dir}: {exc}") from None

    def _tail_log(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def start(self) -> str:
        """Start the engine and block until it answers ping; return its URI."""
        self._stopping = False
        self._spawn()
        self._wait_ready()
        self._write_address()
        return self.uri

    def _write_address(self) -> None:
        (self.data_dir / ADDRESS_FILE).write_text(
            json.dumps({"uri": self.uri, "pid": self.process.pid if self.process else None})
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while (remaining_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(
                    f"embedded engine exited with code {self.process.returncode} "
                    f"(log {self.log_path}):\n{self._tail_log()}"
                )
            # Never past the deadline; and only our own child counts: another engine may have
            # taken the port between free_port() and our child binding it.
            answered = server_pid(self.uri, timeout_ms=min(300, remaining_ms))
            ours = self.process is not None and answered == self.process.pid
            if ours and time.monotonic() <= deadline:  # a ping may overrun its own timeout
                return
            time.sleep(0.05)
        self._kill()
        raise EngineError(
            f"embedded engine did not answer ping within {self.start_timeout:g}s "
            f"(log {self.log_path}):\n{self._tail_log()}"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _kill(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop the engine and forget its address."""
        self._stopping = True
        self._kill()
        with contextlib.suppress(OSError):
            (self.data_dir / ADDRESS_FILE).unlink()
        with contextlib.suppress(OSError):
            (self.data_dir / "engine.pid").unlink()

    async def supervise(self, *, poll: float = 0.25, max_backoff: float = 10.0) -> None:
        """Restart the engine whenever it dies, until ``stop()``; runs as a background task."""
        backoff = 0.25
        while not self._stopping:
            await asyncio.sleep(poll)
            if self._stopping or self.alive():
                backoff = 0.25
                continue
            code = self.process.returncode if self.process else None
            log.warning("embedded engine died (exit code %s); restarting in %.2fs", code, backoff)
            await asyncio.sleep(backoff)
            if self._stopping:
                return
            try:
                await asyncio.to_thread(self._restart)
            except EngineError as exc:
                log.error("embedded engine restart failed: %s", exc)
                backoff = min(backoff * 2, max_backoff)
                continue
            self.restarts += 1
            log.info("embedded engine is back on %s (restart %d)", self.uri, self.restarts)

    def _restart(self) -> None:
        with contextlib.suppress(OSError):
            (self.data_dir / "engine.pid").unlink()  # the dead engine's PID file blocks a new one
        self._spawn()
        self._wait_ready()
        self._write_address()  # the new pid


@contextlib.asynccontextmanager
async def database_for_command(settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """The database for a one-off command: the configured MongoDB, else the engine of a server
    already running on the data directory, else an engine started for the command's duration."""
    engine: EmbeddedEngine | None = None
    uri = settings.mongodb_uri or read_address(settings.data_dir)
    if uri is None:
        engine = EmbeddedEngine(settings.data_dir, start_timeout=settings.engine_start_timeout)
        uri = await asyncio.to_thread(engine.start)
    client = connect(uri, timeout_ms=settings.db_timeout_ms)
    try:
        yield client[settings.database]
    finally:
        await client.close()
        if engine is not None:
            engine.stop()
