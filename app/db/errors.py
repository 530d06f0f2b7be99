"""What the driver's exceptions mean: the one place outside the repositories that knows them.

Other layers ask :func:`is_unavailable` or catch :data:`DatabaseError` instead of importing
PyMongo.
"""

from __future__ import annotations

from pymongo.errors import ConnectionFailure, PyMongoError

DatabaseError = PyMongoError
"""Every error the driver raises: a refused command, a lost connection, a timeout."""

DUPLICATE_KEY = 11000
"""The server's code for a write that a unique index refused (in a bulk write's errors)."""


def is_unavailable(exc: BaseException) -> bool:
    """The database could not be reached, or did not answer in time (``MEMVAULT_DB_TIMEOUT_MS``
    or a :func:`memvault.db.engine.deadline`): the client may try again shortly."""
    # (ServerSelectionTimeoutError is a ConnectionFailure)
    return isinstance(exc, ConnectionFailure) or (isinstance(exc, PyMongoError) and exc.timeout)
