"""Every client method as I/O-free logic, shared by the sync and the async client.

An operation is a generator: it checks its arguments, yields each ``Call`` it needs, receives
that call's ``data`` and finally returns the result as models. The clients drive it with their
transport (``transport.py``), so the logic of each method exists once, and methods that need
several requests (a listing longer than a server page, a message window over several pages)
read as straight-line code.
"""

from __future__ import annotations

import dataclasses
import re
import uuid as uuid_module
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from memvault.client.errors import NotFoundError
from memvault.client.models import (
    CreateUserRequest,
    Memory,
    MemorySearchResult,
    Message,
    Session,
    SessionPage,
    UpdateUserRequest,
    User,
    UserPage,
    normalize_role_type,
)
from memvault.client.protocol import Call

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
M = TypeVar("M", Session, User, Message)
Op = Generator[Call, dict[str, Any], T]
"""An operation: yields calls, is sent each call's data, returns its result."""

Data = dict[str, Any]

DEFAULT_PAGE_SIZE = 100
"""The most items the client asks for in one request (the server's default maximum)."""

DEFAULT_LIMIT = 100
"""How many items ``list_sessions()`` and ``user.list()`` return when no limit is given."""


# Arguments


def require_id(value: object, name: str) -> str:
    """A non-empty id, as Zep's SDK insisted (ValueError otherwise)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def session_arg(
    session: Session | None,
    *,
    session_id: str | None,
    user_id: str | None,
    metadata: Mapping[str, Any] | None,
) -> Session:
    """``add_session(Session(...))`` or ``add_session(session_id=..., ...)``."""
    if session is None:
        session = Session(
            session_id=require_id(session_id, "session_id"),
            user_id=user_id,
            metadata=dict(metadata) if metadata is not None else None,
        )
    elif session_id is not None or user_id is not None or metadata is not None:
        raise TypeError("give a Session or keyword arguments, not both")
    require_id(session.session_id, "session.session_id")
    return session


def session_update_arg(
    session: Session | str | None,
    *,
    session_id: str | None,
    metadata: Mapping[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    """``update_session(Session(...))``, ``update_session("id", metadata=...)`` or
    ``update_session(session_id="id", metadata=...)``: the id and the metadata patch."""
    if isinstance(session, Session):
        if session_id is not None or metadata is not None:
            raise TypeError("give a Session or session_id and metadata, not both")
        return require_id(session.session_id, "session.session_id"), dict(session.metadata or {})
    if session is not None and session_id is not None:
        raise TypeError("session_id given twice")
    given = session if session is not None else session_id
    return require_id(given, "session_id"), dict(metadata or {})


def user_request_arg(
    request: CreateUserRequest | UpdateUserRequest | str | None,
    cls: type[T],
    **fields: Any,
) -> T:
    """``add(CreateUserRequest(...))`` or ``add(user_id=..., ...)`` (and the same for update,
    which also takes the user id first: ``update("ada", email=...)``)."""
    given = {name: value for name, value in fields.items() if value is not None}
    if isinstance(request, CreateUserRequest | UpdateUserRequest):
        if given:
            raise TypeError("give a request object or keyword arguments, not both")
        if not isinstance(request, cls):
            raise TypeError(f"expected a {cls.__name__}, got {type(request).__name__}")
        return request
    if isinstance(request, str):
        if "user_id" in given:
            raise TypeError("user_id given twice")
        given["user_id"] = request
    elif request is not None:
        raise TypeError(f"expected a {cls.__name__}, got {type(request).__name__}")
    require_id(given.get("user_id"), "user_id")
    return cls(**given)


def messages_arg(messages: Memory | Iterable[Message | Mapping[str, Any]]) -> list[Message]:
    """The messages to add; dicts are read as ``Message(**dict)``."""
    items = messages.messages if isinstance(messages, Memory) else messages
    if isinstance(items, str | bytes | Mapping):
        raise TypeError("messages must be a list of Message")
    return [m if isinstance(m, Message) else Message(**m) for m in items]


def limit_arg(limit: int | None, name: str = "limit") -> int | None:
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"{name} must be a positive integer, got {limit!r}")
    return limit


# Conversions


def _datetime(value: str | None) -> datetime | None:
    """A server's DateTime, aware. Text that is not an ISO 8601 instant is None, so one odd time
    never fails a whole read (the server shows times it cannot represent as year 1 or 9999)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    """An instant for the server; a naive datetime is taken as UTC, as the server does."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _keys(model: type[DataclassInstance]) -> tuple[tuple[str, str, bool], ...]:
    """Each field of ``model``: its name, its key in the server's answer, whether required."""
    return tuple(
        (f.name, re.sub(r"_([a-z])", lambda m: m[1].upper(), f.name), _required(f))
        for f in dataclasses.fields(model)
    )


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


_KEYS = {model: _keys(model) for model in (Session, User, Message)}


def _from_node(model: type[M], node: Data, **given: Any) -> M:
    """A model from an object of the server's answer: each field from its camelCase key (a
    required one must be there), times parsed, null metadata as {}; ``given`` fields as given."""
    values = dict(given)
    for name, key, required in _KEYS[model]:
        if name in values:
            continue
        value = node[key] if required else node.get(key)
        if name in ("created_at", "updated_at"):
            value = _datetime(value)
        elif name == "metadata":
            value = value or {}
        values[name] = value
    return model(**values)


def session_from(node: Data) -> Session:
    return _from_node(Session, node)


def user_from(node: Data) -> User:
    return _from_node(User, node)


def message_from(node: Data) -> Message:
    role_type = normalize_role_type(node.get("roleType") or "norole")
    return _from_node(Message, node, uuid=node["uuid"], role_type=role_type)


def message_input(message: Message) -> Data:
    """A message as a ``MemoryInput``. Its ``uuid`` must already be assigned."""
    message.role_type = normalize_role_type(message.role_type, message.role)
    item: Data = {
        "uuid": message.uuid,
        "roleType": message.role_type.upper(),
        "content": message.content,
    }
    if message.role is not None:
        item["role"] = message.role
    if message.metadata is not None:
        item["metadata"] = message.metadata
    if message.token_count is not None:
        item["tokenCount"] = message.token_count
    if message.created_at is not None:
        item["createdAt"] = _iso(message.created_at)
    return item


def _user_fields(request: CreateUserRequest | UpdateUserRequest) -> Data:
    """The request's given fields as input: ``None`` means "not given" (left unchanged)."""
    fields = {
        "userId": request.user_id,
        "email": request.email,
        "firstName": request.first_name,
        "lastName": request.last_name,
        "metadata": request.metadata,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _not_found(what: str, key: str, field: str) -> NotFoundError:
    return NotFoundError(f"{what} {key!r} not found", field=field, may_have_run=False)


# Paging


def _pages(
    operation: str,
    variables: Data,
    *,
    connection: Callable[[Data], Data],
    convert: Callable[[Data], T],
    limit: int | None,
    cursor: str | None,
    page_size: int,
) -> Op[tuple[list[T], str | None, str | None]]:
    """Up to ``limit`` items (all when None) after ``cursor``, over as many server pages as that
    takes; returns the items, the next cursor (None at the end) and the end cursor."""
    items: list[T] = []
    end = cursor
    more = True
    while more and (limit is None or len(items) < limit):
        take = page_size if limit is None else min(page_size, limit - len(items))
        data = yield Call(operation, {**variables, "first": take, "after": end}, idempotent=True)
        page = connection(data)
        for edge in page["edges"]:
            items.append(convert(edge["node"]))
            end = edge["cursor"]
        more = bool(page["pageInfo"]["hasNextPage"]) and bool(page["edges"])
    return items, (end if more else None), end


P = TypeVar("P", SessionPage, UserPage)


def _listing(
    operation: str,
    field: str,
    convert: Callable[[Data], T],
    page: Callable[[list[T], str | None, str | None], P],
    limit: int | None,
    cursor: str | None,
    size: int,
) -> Op[P]:
    """A page of a top-level listing (``users`` or ``sessions``)."""
    items, next_cursor, end = yield from _pages(
        operation,
        {},
        connection=lambda data: data[field],
        convert=convert,
        limit=limit_arg(limit) or DEFAULT_LIMIT,
        cursor=cursor,
        page_size=size,
    )
    return page(items, next_cursor, end)


def _get(operation: str, kind: str, key: str, convert: Callable[[Data], T]) -> Op[T]:
    """A live user or session (``kind``) by id; NotFoundError when there is none."""
    require_id(key, f"{kind}_id")
    data = yield Call(operation, {f"{kind}Id": key}, idempotent=True)
    if data[kind] is None:
        raise _not_found(kind, key, f"{kind}Id")
    return convert(data[kind])


def _delete(operation: str, kind: str, key: str) -> Op[None]:
    """Soft-delete a user or session (``kind``) by id."""
    require_id(key, f"{kind}_id")
    yield Call(operation, {f"{kind}Id": key}, idempotent=False)


# Sessions


def create_session(session: Session) -> Op[Session]:
    variables: Data = {"sessionId": session.session_id}
    if session.user_id is not None:
        variables["userId"] = session.user_id
    if session.metadata is not None:
        variables["metadata"] = session.metadata
    data = yield Call("CreateSession", {"input": variables}, idempotent=False)
    return session_from(data["createSession"])


def get_session(session_id: str) -> Op[Session]:
    return _get("GetSession", "session", session_id, session_from)


def update_session(session_id: str, metadata: Data) -> Op[Session]:
    # A JSON Merge Patch applied twice leaves what it left once: safe to retry.
    variables = {"input": {"sessionId": session_id, "metadata": metadata}}
    data = yield Call("UpdateSession", variables, idempotent=True)
    return session_from(data["updateSession"])


def delete_session(session_id: str) -> Op[None]:
    return _delete("DeleteSession", "session", session_id)


def list_sessions(limit: int | None, cursor: str | None, page_size: int) -> Op[SessionPage]:
    return _listing("ListSessions", "sessions", session_from, SessionPage, limit, cursor, page_size)


# Messages


def add_messages(session_id: str, messages: list[Message], user_id: str | None) -> Op[Memory]:
    """Append messages. Each gets a uuid now, before the first attempt, written onto the
    Message itself: every retry (the client's or the caller's) sends the same uuids, and the
    server stores a uuid once."""
    require_id(session_id, "session_id")
    for message in messages:
        if message.uuid is None:
            message.uuid = str(uuid_module.uuid4())
    variables: Data = {
        "sessionId": session_id,
        "memories": [message_input(m) for m in messages],
    }
    if user_id is not None:
        variables["userId"] = user_id
    data = yield Call("AddMemories", {"input": variables}, idempotent=True)
    return Memory(messages=[message_from(node) for node in data["addMemories"]["memories"]])


def last_messages(session_id: str, lastn: int | None, page_size: int) -> Op[Memory]:
    """The last ``lastn`` messages (all when None), oldest first, read backwards a page at a
    time: messages added meanwhile do not shift the window being read."""
    require_id(session_id, "session_id")
    if lastn is not None and (not isinstance(lastn, int) or lastn < 0):
        raise ValueError(f"lastn must be a non-negative integer, got {lastn!r}")
    pages: list[list[Message]] = []
    remaining = lastn
    before: str | None = None
    while True:
        take = page_size if remaining is None else min(page_size, remaining)
        variables = {"sessionId": session_id, "last": take, "before": before}
        data = yield Call("LastMemories", variables, idempotent=True)
        if data["session"] is None:
            raise _not_found("session", session_id, "sessionId")
        window = data["session"]["memories"]
        nodes = window["nodes"]
        pages.append([message_from(node) for node in nodes])
        if remaining is not None:
            remaining -= len(nodes)
        if not nodes or not window["pageInfo"]["hasPreviousPage"] or remaining == 0:
            break
        before = window["pageInfo"]["startCursor"]
    return Memory(messages=[message for page in reversed(pages) for message in page])


DEFAULT_SEARCH_LIMIT = 10
"""How many results ``memory.search`` returns when no limit is given."""


def search_memories(
    text: str,
    *,
    session_id: str | None,
    user_id: str | None,
    limit: int | None,
    page_size: int,
) -> Op[list[MemorySearchResult]]:
    """Up to ``limit`` messages matching ``text``, best first, in the session and/or of the
    user given (the whole project when neither), read a page at a time."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    wanted = limit_arg(limit, "limit") or DEFAULT_SEARCH_LIMIT
    scope: Data = {}
    if session_id is not None:
        scope["sessionId"] = require_id(session_id, "session_id")
    if user_id is not None:
        scope["userId"] = require_id(user_id, "user_id")
    found: list[MemorySearchResult] = []
    after: str | None = None
    while len(found) < wanted:
        variables = {
            "query": text,
            "filter": scope or None,
            "first": min(page_size, wanted - len(found)),
            "after": after,
        }
        page = (yield Call("SearchMemories", variables, idempotent=True))["searchMemories"]
        found += [
            MemorySearchResult(
                message=message_from(edge["node"]),
                score=edge["score"],
                session_id=edge["node"]["session"]["sessionId"],
            )
            for edge in page["edges"]
        ]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    return found


def update_message_metadata(session_id: str, uuid: str, metadata: Mapping[str, Any]) -> Op[Message]:
    """Merge into one message's metadata; NOT_FOUND unless the message is in that session."""
    require_id(session_id, "session_id")
    require_id(uuid, "uuid")
    data = yield Call("MemorySession", {"uuid": uuid}, idempotent=True)
    found = data["memory"]
    if found is None or found["session"]["sessionId"] != session_id:
        raise NotFoundError(
            f"message {uuid!r} not found in session {session_id!r}",
            field="uuid",
            may_have_run=False,
        )
    variables = {"input": {"uuid": uuid, "metadata": dict(metadata)}}
    data = yield Call("UpdateMemory", variables, idempotent=True)
    return message_from(data["updateMemory"])


# Users


def create_user(request: CreateUserRequest) -> Op[User]:
    data = yield Call("CreateUser", {"input": _user_fields(request)}, idempotent=False)
    return user_from(data["createUser"])


def get_user(user_id: str) -> Op[User]:
    return _get("GetUser", "user", user_id, user_from)


def update_user(request: UpdateUserRequest) -> Op[User]:
    data = yield Call("UpdateUser", {"input": _user_fields(request)}, idempotent=True)
    return user_from(data["updateUser"])


def delete_user(user_id: str) -> Op[None]:
    return _delete("DeleteUser", "user", user_id)


def list_users(limit: int | None, cursor: str | None, page_size: int) -> Op[UserPage]:
    return _listing("ListUsers", "users", user_from, UserPage, limit, cursor, page_size)


def user_sessions(user_id: str, page_size: int) -> Op[list[Session]]:
    """Every live session of a user, oldest first."""
    require_id(user_id, "user_id")

    def connection(data: Data) -> Data:
        if data["user"] is None:
            raise _not_found("user", user_id, "userId")
        sessions: Data = data["user"]["sessions"]
        return sessions

    items, _, _ = yield from _pages(
        "UserSessions",
        {"userId": user_id},
        connection=connection,
        convert=session_from,
        limit=None,
        cursor=None,
        page_size=page_size,
    )
    return items
