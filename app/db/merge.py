"""JSON Merge Patch (RFC 7396) for metadata: the one merge function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


class MetadataPatch(dict[str, Any]):
    """A checked merge patch for stored metadata, with the rule its merged result must meet.

    Merging into a stored object goes through :meth:`merged_into`, so a run of patches, each
    within the limits, cannot grow an object past them (``check`` raises ``BadUserInput``).
    """

    __slots__ = ("check",)

    def __init__(
        self, changes: Mapping[str, Any], *, check: Callable[[dict[str, Any]], object]
    ) -> None:
        super().__init__(changes)
        self.check = check

    def merged_into(self, target: Any) -> dict[str, Any]:
        """``target`` with this patch applied, once ``check`` accepts the result."""
        merged: dict[str, Any] = merge_patch(target, self)
        self.check(merged)
        return merged


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply ``patch`` to ``target`` as RFC 7396 says; neither argument is modified.

    Objects merge recursively, ``None`` removes a key, anything else replaces.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
