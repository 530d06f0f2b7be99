"""The typed per-request context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import strawberry

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.websockets import WebSocket

    from app.config import Settings
    from app.db.documents import Doc
    from app.schema.loaders import DataLoaders


@dataclass
class Context:
    """Everything a resolver may use; made fresh for every request."""

    request: Request | WebSocket
    response: Response | None
    db: AsyncDatabase[Doc]
    settings: Settings
    project_id: str
    request_id: str
    loaders: DataLoaders


Info = strawberry.Info[Context, Any]
