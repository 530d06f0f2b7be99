"""Connecting to MongoDB, and running the embedded engine (``nx-27017``) as a supervised child."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymongo
from pymongo import AsyncMongoClient, MongoClient, monitoring
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

from memvault.db.errors import is_unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from pymongo.asynchronous.database import AsyncDatabase

    from memvault.config import Settings

log = logging.getLogger("memvault.engine")

GUARD_MODULE = "memvault.db.engine_guard"  # runs the engine, stopping it when its parent is gone
ADDRESS_FILE = "engine.json"
PID_FILE = "engine.pid"
STOP_WAIT_S = 5.0
HEARTBEAT_MS = 500  # the driver's minimum; see connect()


class EngineError(RuntimeError):
    """The embedded engine could not be started."""


class NoStoreError(RuntimeError):
    """A one-off command found no store where ``MEMVAULT_DATA_DIR`` points (and was not told to
    create one)."""


def store_exists(data_dir: Path, database: str) -> bool:
    """Whether the embedded engine's files in ``data_dir`` hold ``database`` (it keeps one
    SQLite file per database)."""
    return (data_dir / "db" / f"{database}.db").is_file()


def redact_uri(uri: str) -> str:
    """The URI without its password."""
    scheme, sep, rest = uri.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return uri
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def describe_failure(exc: BaseException, settings: Settings) -> str | None:
    """One line saying why the database could not be used and which setting to look at, for
    a failure to start the embedded engine or a driver error; None for any other exception."""
    if settings.mongodb_uri is None:
        where = f"the embedded engine (MEMVAULT_DATA_DIR={settings.data_dir})"
    else:
        where = f"MongoDB at {redact_uri(settings.mongodb_uri)} (MEMVAULT_MONGODB_URI)"
    if isinstance(exc, NoStoreError):
        return str(exc)
    if isinstance(exc, EngineError):
        return f"cannot start {where}: {_one_line(str(exc))}"
    if isinstance(exc, ConfigurationError):  # InvalidURI included
        return f"MEMVAULT_MONGODB_URI is not a URI the driver accepts: {_one_line(str(exc))}"
    if is_unavailable(exc):
        # The driver appends its timeouts and topology to the reason: the first part says it.
        reason = str(exc).split(" (configured timeouts", 1)[0].split(", Timeout:", 1)[0]
        return (
            f"cannot reach {where} within MEMVAULT_DB_TIMEOUT_MS ({settings.db_timeout_ms} ms): "
            f"{_one_line(reason)}"
        )
    if isinstance(exc, OperationFailure):
        reason = (exc.details or {}).get("errmsg") or str(exc)
        return f"{where} refused a command: {_one_line(str(reason))}"
    if isinstance(exc, PyMongoError):
        return f"database error from {where}: {_one_line(str(exc))}"
    return None


def _one_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no detail)"


def connect(
    uri: str,
    *,
    timeout_ms: int = 2000,
    operation_timeout_ms: int | None = None,
    event_listeners: Sequence[Any] = (),
) -> AsyncMongoClient[dict[str, Any]]:
    """An async client whose operations fail within about ``timeout_ms`` when the server is away.

    "Away" includes a server that keeps its connections open but stops answering (frozen, or a
    network that drops packets): the driver's monitor checks the server every
    ``HEARTBEAT_MS`` with a ``timeout_ms`` deadline and, when the check times out, fails the
    operations waiting on it. With the driver's default of a check every 10 s they would hang.

    That misses a server that answers the monitor but not the operation: the embedded engine
    runs one command at a time per database, and its monitor's check needs none, so operations
    queued behind a long command waited for all of it (20 s seen). ``operation_timeout_ms`` bounds
    each operation too (the driver's ``timeoutMS``: a timeout error past it); work that may
    rightly take longer runs under :func:`deadline`.
    """
    bounded: dict[str, Any] = (
        {} if operation_timeout_ms is None else {"timeoutMS": operation_timeout_ms}
    )
    return AsyncMongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        heartbeatFrequencyMS=HEARTBEAT_MS,
        tz_aware=True,
        uuidRepresentation="standard",
        event_listeners=list(event_listeners),
        **bounded,
    )


def deadline(seconds: float) -> contextlib.AbstractContextManager[None]:
    """Bound every database operation inside the block by ``seconds`` together, in place of
    the client's per-operation timeout (the driver's ``pymongo.timeout``)."""
    return pymongo.timeout(seconds)


class CommandCounter(monitoring.CommandListener):
    """Reports each database command this process sends, when it is done, to ``observe``
    (its name, seconds, and whether it failed): ``Metrics.db_command`` for ``/metrics``."""

    def __init__(self, observe: Callable[[str, float, bool], None]) -> None:
        self.observe = observe

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.observe(event.command_name, event.duration_micros / 1e6, False)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.observe(event.command_name, event.duration_micros / 1e6, True)


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


def clear_stale_engine(data_dir: Path) -> None:
    """Make way for a new engine on ``data_dir``: stop one that a process now gone left running
    there (one log line), or raise ``EngineError`` when a live process still uses it."""
    pid_path = data_dir / PID_FILE
    pid = _read_pid(pid_path)
    if pid is None or not process_running(pid):
        return  # nothing runs; the engine itself replaces a PID file whose process is gone
    address = _read_json(data_dir / ADDRESS_FILE)
    owner = address.get("owner")
    if address.get("pid") == pid and isinstance(owner, int) and process_running(owner):
        raise EngineError(
            f"data directory {data_dir} is in use by process {owner} (its engine is process "
            f"{pid}); stop that process or set MEMVAULT_DATA_DIR to another directory"
        )
    if not _is_engine_of(pid, pid_path, address):
        log.warning(
            "removing %s: process %d is not an engine of this data directory", pid_path, pid
        )
        pid_path.unlink(missing_ok=True)
        return
    log.warning(
        "stopping a stale embedded engine (process %d) left running on %s by a server that is gone",
        pid,
        data_dir,
    )
    _terminate(pid)
    pid_path.unlink(missing_ok=True)
    (data_dir / ADDRESS_FILE).unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _is_engine_of(pid: int, pid_path: Path, address: dict[str, Any]) -> bool:
    """Whether ``pid`` is the engine that wrote ``pid_path`` (not a process that reused its pid):
    it answers at the recorded address with that pid, or (Linux) its command line names the file.
    """
    uri = address.get("uri")
    if isinstance(uri, str) and server_pid(uri) == pid:
        return True
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(pid_path) in arguments


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL if ``pid`` still runs after ``STOP_WAIT_S``."""
    for stop_signal in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, stop_signal)
        stop_by = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < stop_by:
            if not process_running(pid):
                return
            time.sleep(0.05)


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
        self._lifeline: int | None = None  # see engine_guard

    @property
    def uri(self) -> str:
        return engine_uri(self.port)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "engine.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / PID_FILE

    def engine_arguments(self) -> list[str]:
        """The engine's command-line arguments (after ``python -m nx_27017.nx_27017``)."""
        return [
            "--data-dir",
            str(self.data_dir / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--pid-file",
            str(self.pid_path),
            "--log-file",
            str(self.log_path),
        ]

    def _spawn(self) -> None:
        try:
            (self.data_dir / "db").mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")
        except OSError as exc:
            raise EngineError(f"cannot use data directory {self.data_dir}: {exc}") from None
        self._close_lifeline()
        lifeline, self._lifeline = os.pipe()  # the write end is not inherited by any child
        command = [sys.executable, "-m", GUARD_MODULE, str(lifeline), str(os.getpid())]
        try:
            self.process = subprocess.Popen(
                command + self.engine_arguments(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(lifeline,),
                start_new_session=True,  # Ctrl-C reaches us, and we stop the engine ourselves
            )
        except OSError as exc:
            self._close_lifeline()
            raise EngineError(f"cannot start the engine in {self.data_dir}: {exc}") from None
        finally:
            os.close(lifeline)
            out.close()

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    def _tail_log(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def start(self) -> str:
        """Start the engine and block until it answers ping; return its URI."""
        self._stopping = False
        clear_stale_engine(self.data_dir)
        self._spawn()
        self._wait_ready()
        self._write_address()
        return self.uri

    def _write_address(self) -> None:
        (self.data_dir / ADDRESS_FILE).write_text(
            json.dumps(
                {
                    "uri": self.uri,
                    "pid": self.process.pid if self.process else None,
                    "owner": os.getpid(),  # see clear_stale_engine
                }
            )
        )

    def _wait_ready(self) -> None:
        ready_by = time.monotonic() + self.start_timeout
        while (remaining_ms := int((ready_by - time.monotonic()) * 1000)) > 0:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(
                    f"embedded engine exited with code {self.process.returncode} "
                    f"(log {self.log_path}):\n{self._tail_log()}"
                )
            # Never past the deadline; and only our own child counts: another engine may have
            # taken the port between free_port() and our child binding it.
            answered = server_pid(self.uri, timeout_ms=min(300, remaining_ms))
            ours = self.process is not None and answered == self.process.pid
            if ours and time.monotonic() <= ready_by:  # a ping may overrun its own timeout
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
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._close_lifeline()

    def stop(self) -> None:
        """Stop the engine and forget its address."""
        self._stopping = True
        self._kill()
        with contextlib.suppress(OSError):
            (self.data_dir / ADDRESS_FILE).unlink()
        with contextlib.suppress(OSError):
            self.pid_path.unlink()

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
            self.pid_path.unlink()  # the dead engine's PID file blocks a new one
        self._spawn()
        self._wait_ready()
        self._write_address()  # the new pid


@contextlib.asynccontextmanager
async def database_for_command(
    settings: Settings, *, create: bool = False
) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """The database for a one-off command: the configured MongoDB, else the engine of a server
    already running on the data directory, else an engine started for the command's duration.

    That last one only on a data directory that holds the store (``NoStoreError`` otherwise: a
    mistyped ``MEMVAULT_DATA_DIR`` would get a new empty store), unless ``create``.
    """
    engine: EmbeddedEngine | None = None
    uri = settings.mongodb_uri or read_address(settings.data_dir)
    if uri is None and not create and not store_exists(settings.data_dir, settings.database):
        raise NoStoreError(
            f"MEMVAULT_DATA_DIR={settings.data_dir} holds no memvault store (database "
            f"{settings.database!r}): check the path; `memvault serve` creates one there, as do "
            "`memvault keys create` and `memvault documents add` given --create"
        )
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
