"""What the sync and async clients share, free of I/O: the request a call becomes, how a
response becomes data or an error, and when a failed call is tried again.

The I/O shells (``transport.py``) only send bytes with httpx and sleep between attempts.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from memvault.client import documents
from memvault.client.errors import (
    MemvaultClientError,
    MemvaultConnectionError,
    ServiceUnavailableError,
    UnexpectedResponseError,
    error_class,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

USER_AGENT = "memvault-client/0.1"

# Connections the pool keeps idle for less than uvicorn's keep-alive (5 s), so the client does not
# send a request on a connection the server is closing.
KEEPALIVE_EXPIRY_S = 4.0


@dataclass(frozen=True, slots=True)
class Call:
    """One GraphQL request: an operation of ``documents.OPERATIONS`` and its variables.

    ``idempotent``: sending it twice has the effect of sending it once (reads, ``addMemories``
    with client uuids, merges). Only idempotent calls are retried after a failure that may have
    reached the server; the others only when the server surely did not run them.
    """

    operation: str
    variables: Mapping[str, Any]
    idempotent: bool

    @property
    def document(self) -> str:
        return documents.OPERATIONS[self.operation]

    def body(self) -> bytes:
        """The JSON request body (UTF-8; ASCII-escaped when the input holds lone surrogates, so
        the server, not the encoder, says what is wrong with them)."""
        payload = {
            "query": self.document,
            "operationName": self.operation,
            "variables": self.variables,
        }
        try:
            return json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(payload).encode("ascii")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried: at most ``max_retries`` more attempts, waiting
    ``backoff * 2**n`` seconds (capped at ``max_backoff``, with jitter) before attempt ``n + 1``."""

    max_retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 4.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("max_retries, backoff and max_backoff must not be negative")

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        return base * (0.5 + random.random() / 2) if self.jitter else base

    def next_delay(self, error: MemvaultClientError, call: Call, attempt: int) -> float | None:
        """Seconds to wait before trying ``call`` again after ``error`` on attempt ``attempt``
        (0 for the first), or None when it must not be retried."""
        if attempt >= self.max_retries or not error.transient:
            return None
        if error.may_have_run and not call.idempotent:
            return None
        return self.delay(attempt)


@dataclass(frozen=True, slots=True)
class Deadline:
    """When one call must be over, retries and the waits between them included: ``timeout``
    seconds after it began (``None``: never)."""

    at: float | None

    @classmethod
    def after(cls, timeout: float | None) -> Deadline:
        return cls(None if timeout is None else time.monotonic() + timeout)

    def remaining(self) -> float | None:
        """Seconds left (at least 0), or None without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def allows(self, delay: float) -> bool:
        """Whether waiting ``delay`` seconds still leaves time for another attempt."""
        remaining = self.remaining()
        return remaining is None or delay < remaining

    def request_timeout(self, limits: httpx.Timeout) -> httpx.Timeout:
        """httpx's per-phase ``limits`` of one request, none past the deadline."""
        remaining = self.remaining()
        if remaining is None:
            return limits

        def capped(limit: float | None) -> float:
            return remaining if limit is None else min(limit, remaining)

        return httpx.Timeout(
            connect=capped(limits.connect),
            read=capped(limits.read),
            write=capped(limits.write),
            pool=capped(limits.pool),
        )


def call_timeout(timeout: float | httpx.Timeout | None) -> float | None:
    """The whole-call deadline a client's ``timeout`` argument sets: a number of seconds, or
    none for ``None`` or an ``httpx.Timeout`` (which limits each request's phases instead)."""
    return None if timeout is None or isinstance(timeout, httpx.Timeout) else float(timeout)


def graphql_url(base_url: str) -> str:
    """The GraphQL endpoint for a base URL (given with or without ``/graphql``)."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/graphql"):
        path += "/graphql"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def headers(api_key: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    result = {
        "content-type": "application/json",
        "accept": "application/json",
        "user-agent": USER_AGENT,
    }
    if api_key:
        result["authorization"] = f"Bearer {api_key}"
    result.update(extra or {})
    return result


def connection_error(exc: httpx.TransportError) -> MemvaultConnectionError:
    """The client error for an httpx failure to get an answer. A request that never left (no
    connection, or no free connection in the pool) is known not to have run."""
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    detail = str(exc) or type(exc).__name__
    return MemvaultConnectionError(
        f"request to memvault {kind}: {detail}", status_code=None, may_have_run=not unsent
    )


def parse_response(status: int, content: bytes) -> dict[str, Any]:
    """The ``data`` of a GraphQL response, or the client error it carries."""
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or not ("data" in body or "errors" in body):
        raise _http_error(status, content)
    errors = body.get("errors")
    if errors:
        raise graphql_error(errors, status)
    data = body.get("data")
    if status != 200 or not isinstance(data, dict):
        raise UnexpectedResponseError(
            f"HTTP {status} without data or errors", status_code=status, may_have_run=True
        )
    return data


def graphql_error(errors: list[Any], status: int) -> MemvaultClientError:
    """The exception for a response's errors: the first error decides the class."""
    raw: list[dict[str, Any]] = [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
    first = raw[0]
    given = first.get("extensions")
    extensions: dict[str, Any] = given if isinstance(given, dict) else {}
    code = extensions.get("code")
    cls = error_class(code)
    return cls(
        str(first.get("message") or "error without a message"),
        code=code,
        status_code=status,
        field=extensions.get("field"),
        request_id=extensions.get("requestId"),
        errors=raw,
        # An HTTP error status with a GraphQL error body comes from the server's guard, which
        # answers before anything is run (401, 413, and 503 when the database is unreachable).
        may_have_run=status == 200,
    )


def _http_error(status: int, content: bytes) -> MemvaultClientError:
    text = content[:200].decode("utf-8", "replace").strip()
    message = f"HTTP {status} from memvault" + (f": {text}" if text else "")
    if status == 404:
        message += " (is base_url the memvault server?)"
    if status in {502, 503, 504}:
        return ServiceUnavailableError(message, status_code=status, may_have_run=True)
    cls = error_class(_STATUS_CODES.get(status))
    if cls is MemvaultClientError:
        cls = UnexpectedResponseError
    return cls(message, status_code=status, may_have_run=status >= 500)


_STATUS_CODES = {
    400: "BAD_USER_INPUT",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    413: "PAYLOAD_TOO_LARGE",
    500: "INTERNAL_SERVER_ERROR",
}
