"""A Python client for memvault with the shape of Zep's SDK, sync and async.

    from memvault.client import MemvaultClient, Message, Session

    with MemvaultClient(base_url="http://127.0.0.1:8000") as client:
        client.memory.add_session(Session(session_id="s1", user_id=None))
        client.memory.add("s1", messages=[Message(role_type="user", content="Hello")])
        print(client.memory.get("s1", lastn=10).messages)

It speaks memvault's GraphQL API (every document it sends is in ``documents.py``) over one
pooled httpx connection per client.
"""

from memvault.client.client import AsyncMemvaultClient, MemvaultClient
from memvault.client.errors import (
    AlreadyExistsError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GraphQLDocumentError,
    InternalServerError,
    MemvaultClientError,
    MemvaultConnectionError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ServiceUnavailableError,
    UnexpectedResponseError,
)
from memvault.client.models import (
    ROLE_TYPES,
    CreateUserRequest,
    Memory,
    MemorySearchResult,
    Message,
    Page,
    RoleType,
    Session,
    SessionPage,
    UpdateUserRequest,
    User,
    UserPage,
)

__all__ = [
    "ROLE_TYPES",
    "APIError",
    "AlreadyExistsError",
    "AsyncMemvaultClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "CreateUserRequest",
    "GraphQLDocumentError",
    "InternalServerError",
    "Memory",
    "MemorySearchResult",
    "MemvaultClient",
    "MemvaultClientError",
    "MemvaultConnectionError",
    "Message",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RoleType",
    "ServiceUnavailableError",
    "Session",
    "SessionPage",
    "UnexpectedResponseError",
    "UpdateUserRequest",
    "User",
    "UserPage",
]
