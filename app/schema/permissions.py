"""Scope checks on mutations: read keys cannot write; only admin keys may erase."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission

from memvault.schema.context import Info


class CanWrite(BasePermission):
    """The caller's key has scope ``write`` or ``admin``."""

    message = "this operation needs a write key"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        info.context.principal.require("write", action=info.field_name)
        return True


class IsAdmin(BasePermission):
    """The caller's key has scope ``admin``."""

    message = "this operation needs an admin key"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        info.context.principal.require("admin", action=info.field_name)
        return True
