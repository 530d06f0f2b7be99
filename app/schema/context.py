"""The typed per-request context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry

if TYPE_CHECKING:
    from graphql import FieldNode
    from starlette.requests import Request
    from starlette.websockets import WebSocket

    from memvault.config import Settings
    from memvault.db.live import ChangeHub
    from memvault.db.memories import Fields
    from memvault.db.records import Database
    from memvault.errors import SubscriberTooSlow
    from memvault.schema.loaders import DataLoaders
    from memvault.security import Principal


@dataclass
class Context:
    """Everything a resolver may use; made fresh for every request."""

    request: Request | WebSocket
    db: Database
    settings: Settings
    principal: Principal
    request_id: str
    loaders: DataLoaders
    # Per merged selection of a memories field (the ids of its field nodes): the stored fields
    # its nodes need (see lookahead.py).
    lookahead: dict[tuple[int, ...], tuple[tuple[FieldNode, ...], Fields]] = field(
        default_factory=dict
    )
    # Subscriptions (a WebSocket connection's context): the process's live changes, and what
    # to do when a subscriber falls too far behind (close its connection).
    live: ChangeHub | None = None
    too_slow: Callable[[SubscriberTooSlow], None] | None = None

    @property
    def project_id(self) -> str:
        """Every read and write of this request is inside this project."""
        return self.principal.project_id


Info = strawberry.Info[Context, Any]
