"""Which stored fields a query's memory nodes need, so a read fetches only those.

A chat client asking ``memories(last: 10) { nodes { content } }`` for a hundred sessions needs
the content, not the metadata, roles and timestamps of a thousand memories: decoding and wrapping
those is most of what such a read costs the API. The selection under a ``memories`` connection
field is mapped to document fields, rounded up to one of the data layer's few memory views
(``MEMORY_SHAPES`` in ``memvault.db.memories``: each new projection costs the embedded engine a
compile); anything not understood falls back to the full view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode

from memvault.db.memories import MEMORY_KEYS, memory_shape

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from graphql import FragmentDefinitionNode, SelectionSetNode

    from memvault.schema.context import Info

# Memory's GraphQL fields -> the stored fields each needs.
MEMORY_SOURCES: dict[str, tuple[str, ...]] = {
    "__typename": (),
    "id": ("uuid",),
    "uuid": ("uuid",),
    "seq": ("seq",),
    "role": ("role",),
    "roleType": ("role_type",),
    "content": ("content",),
    "metadata": ("metadata",),
    "tokenCount": ("token_count",),
    "createdAt": ("created_ms",),
    "updatedAt": ("updated_ms",),
    "session": ("session_id",),
}

Fields = frozenset[str] | None
"""Stored fields to fetch; None: the full view."""


def memory_fields(info: Info, connection_nodes: Sequence[FieldNode] | None = None) -> Fields:
    """The memory view (one of ``MEMORY_SHAPES``) the memory nodes under a ``memories`` field
    need: the field being resolved, or ``connection_nodes`` (a parent prefetching it).

    Computed once per request per merged selection, for all the sessions sharing it and for a
    prefetch and the field alike. The key is every field node of the selection: one fragment
    spread in two places gives two selections that share their first node and differ after it.
    """
    raw = info._raw_info
    nodes = tuple(raw.field_nodes if connection_nodes is None else connection_nodes)
    key = tuple(map(id, nodes))
    cache = info.context.lookahead
    cached = cache.get(key)
    if cached is None:  # the nodes are kept with their ids, so no id is reused meanwhile
        cached = cache[key] = (nodes, memory_shape(fields_under(nodes, raw.fragments)))
    return cached[1]


def fields_under(
    connection_nodes: Sequence[FieldNode], fragments: Mapping[str, FragmentDefinitionNode]
) -> Fields:
    """Stored fields needed by the nodes of a memories connection selected by these field nodes.

    Fields under ``@skip``/``@include`` count as selected: fetching a field too many is harmless.
    """
    needed = set(MEMORY_KEYS)
    for connection in connection_nodes:
        for field in _fields(connection.selection_set, fragments):
            name = field.name.value
            if name == "nodes":
                memory_nodes = [field]
            elif name == "edges":
                memory_nodes = [
                    edge_field
                    for edge_field in _fields(field.selection_set, fragments)
                    if edge_field.name.value == "node"
                ]
            else:  # pageInfo, totalCount, __typename
                continue
            for node in memory_nodes:
                for memory_field in _fields(node.selection_set, fragments):
                    sources = MEMORY_SOURCES.get(memory_field.name.value)
                    if sources is None:
                        return None
                    needed.update(sources)
    return frozenset(needed)


def _fields(
    selection_set: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode]
) -> Iterator[FieldNode]:
    """The fields of a selection set, with inline fragments and fragment spreads expanded."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                yield from _fields(fragment.selection_set, fragments)
