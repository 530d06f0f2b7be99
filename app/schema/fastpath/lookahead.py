"""Which stored fields a query's memory (or listed session) nodes need, so a read fetches only
those.

A chat client asking ``memories(last: 10) { nodes { content } }`` for a hundred sessions needs
the content, not the metadata, roles and timestamps of a thousand memories: decoding and wrapping
those is most of what such a read costs the API. The fields selected under a ``memories``
connection field are handed to the data layer by their domain names; it maps them to stored
fields (``MEMORY_SOURCES``), rounded up to one of its few memory shapes (``MEMORY_SHAPES`` in
``memvault.db.memories``: each new projection costs the embedded engine a compile); anything not
understood falls back to the full projection. A listing of sessions (``sessions(...)``) is read
the same way, in one of ``SESSION_SHAPES`` (a page of ids, or everything).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode
from strawberry.types import get_object_definition

from memvault.db import sessions
from memvault.db.memories import memory_shape, stored_fields
from memvault.schema._upstream import raw_info

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    import strawberry
    from graphql import FragmentDefinitionNode, SelectionSetNode

    from memvault.db.memories import Fields
    from memvault.schema.context import Info


def memory_fields(info: Info, connection_nodes: Sequence[FieldNode] | None = None) -> Fields:
    """The memory view (one of ``MEMORY_SHAPES``) the memory nodes under a ``memories`` field
    need: the field being resolved, or ``connection_nodes`` (a parent prefetching it).

    Computed once per request per merged selection, for all the sessions sharing it and for a
    prefetch and the field alike. The key is every field node of the selection: one fragment
    spread in two places gives two selections that share their first node and differ after it.
    The full view (None) when the schema runs without the fast path.
    """
    return _view(info, connection_nodes, "Memory", _memory_view)


def session_fields(info: Info) -> sessions.Fields:
    """The session view (one of ``SESSION_SHAPES``) the session nodes of the connection being
    resolved need (a listing: ``Query.sessions``); the full view (None) without the fast path."""
    return _view(info, None, "Session", sessions.stored_fields)


def _memory_view(names: Iterable[str]) -> Fields:
    return memory_shape(stored_fields(names))


def _view(
    info: Info,
    connection_nodes: Sequence[FieldNode] | None,
    type_name: str,
    view: Callable[[Iterable[str]], frozenset[str] | None],
) -> frozenset[str] | None:
    """``view`` of the fields selected on the ``type_name`` nodes of a connection, cached per
    request by the connection's field nodes."""
    if not getattr(info.schema, "fast_path", False):
        return None
    raw = raw_info(info)
    nodes = tuple(raw.field_nodes if connection_nodes is None else connection_nodes)
    key = tuple(map(id, nodes))
    cache = info.context.lookahead
    cached = cache.get(key)
    if cached is None:  # the nodes are kept with their ids, so no id is reused meanwhile
        names = domain_names(info.schema, type_name)
        cached = cache[key] = (nodes, fields_under(nodes, raw.fragments, names, view))
    return cached[1]


@functools.cache
def domain_names(schema: strawberry.Schema, type_name: str = "Memory") -> dict[str, str]:
    """The GraphQL field names of ``type_name`` (``Memory`` or ``Session``) in this schema ->
    their domain names (the type's attribute names, which ``memories.MEMORY_SOURCES`` and
    ``sessions.SESSION_SOURCES`` map to stored fields)."""
    from memvault.schema import types  # (types imports this module)

    graphql_name = schema.config.name_converter.get_graphql_name
    definition = get_object_definition(getattr(types, type_name), strict=True)
    return {graphql_name(field): field.python_name for field in definition.fields}


def fields_under(
    connection_nodes: Sequence[FieldNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    names: Mapping[str, str],
    view: Callable[[Iterable[str]], frozenset[str] | None] = stored_fields,
) -> frozenset[str] | None:
    """``view`` of the fields selected on the nodes of a connection selected by these field nodes
    (``names``: :func:`domain_names`): for memories by default, the stored fields they need; None
    (everything) for a field the data layer does not know.

    Fields under ``@skip``/``@include`` count as selected: fetching a field too many is harmless.
    """
    selected: list[str] = []
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
                    name = memory_field.name.value
                    if name == "__typename":
                        continue
                    if name not in names:
                        return None
                    selected.append(names[name])
    return view(selected)


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
