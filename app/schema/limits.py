"""What a GraphQL document may be: its UTF-8 bytes, tokens, depth and aliases, and one operation
when it names none.

The fast path's document store applies these once per distinct document; a schema running as
plain Strawberry applies them on every request, through :func:`limit_extensions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphql import GraphQLSyntaxError, OperationDefinitionNode, Source, parse
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension

from memvault.schema._upstream import max_aliases_rule, query_depth_rule
from memvault.schema.errors import OperationNameRequired

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from graphql import ASTValidationRule, DocumentNode

    from memvault.config import Settings


def check_size(query: str, max_bytes: int) -> int:
    """The size of ``query`` (its characters, or its UTF-8 bytes when near ``max_bytes``); a
    ``GraphQLSyntaxError`` when it is over ``max_bytes`` (UTF-8), before anything is parsed."""
    size = len(query)  # characters: at most its UTF-8 bytes, and at least a quarter of them
    if not query.isascii() and size <= max_bytes < 4 * size:
        size = len(query.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        message = f"Document is larger than {max_bytes} bytes. Parsing aborted."
        # at 1:1 of an empty source: locating it in the document scans the whole text
        raise GraphQLSyntaxError(Source(""), 0, message)
    return size


def parse_limited(query: str, settings: Settings) -> DocumentNode:
    """``query`` parsed within the size and token limits (a ``GraphQLSyntaxError`` otherwise)."""
    check_size(query, settings.max_query_bytes)
    return parse(query, max_tokens=settings.max_tokens)


def validation_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """The depth and alias limits: validation rules added to graphql-core's and Strawberry's."""
    return [
        query_depth_rule(settings.max_query_depth, None),
        max_aliases_rule(settings.max_aliases),
    ]


def only_operation_name(document: DocumentNode) -> str | None:
    """The name of the document's one operation (None when it has none, or is anonymous);
    :class:`OperationNameRequired` when the document has several (the GraphQL spec's rule)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) > 1:
        raise OperationNameRequired
    return operations[0].name.value if operations and operations[0].name else None


class MaxDocumentBytes(SchemaExtension):
    """Refuses a document over ``max_bytes`` before it is parsed."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def on_parse(self) -> Iterator[None]:
        query = self.execution_context.query
        if query is not None:
            check_size(query, self.max_bytes)
        yield


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """Strawberry extensions (factories: one instance per request) applying every limit of
    ``settings`` to each request, for a schema without the fast path."""
    rules = validation_rules(settings)
    return [
        lambda: MaxDocumentBytes(settings.max_query_bytes),
        lambda: MaxTokensLimiter(settings.max_tokens),
        lambda: AddValidationRules(rules),
    ]
