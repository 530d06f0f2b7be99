"""Log output: text for people, or one JSON object per line (``MEMVAULT_LOG_FORMAT=json``) for
log pipelines. Lines logged while a request is served carry its id (``REQUEST_ID``); the access
line of each request (``app/http/observe.py``) carries the rest: operation, project, duration,
outcome code. README "Observability" shows both formats.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Set by app/http/observe.py for the duration of each request (its task and what it starts).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "memvault_request_id", default=None
)
# What a JSON line always has beside time, level, logger and message (null where it does not
# apply: a line about no request, or logged before the request's operation was known).
REQUEST_FIELDS = ("request_id", "operation", "operation_type", "project", "duration_ms", "code")
# What an access line has besides.
ACCESS_FIELDS = ("status", "method", "path", "client")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in REQUEST_FIELDS:
            line[name] = getattr(record, name, None)
        if line["request_id"] is None:
            line["request_id"] = REQUEST_ID.get()
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, log_format: str = "text") -> None:
    """Send every log line (uvicorn's too) to stderr at ``level``, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler])
