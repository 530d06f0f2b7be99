"""Each distinct GraphQL document is parsed and validated once.

One extension in place of Strawberry's ``MaxTokensLimiter``, ``AddValidationRules``,
``ParserCache`` and ``ValidationCache``: one extension instance and two hooks per request
instead of four and six, and a validation cache keyed by the query text (Strawberry's hashes the
parsed document, which walks its whole tree on every request). Documents are what clients send:
their size is checked before anything is parsed or kept, and the cache is bounded by an estimate
of its bytes as well as by its count.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphql import parse
from strawberry.extensions import SchemaExtension

from memvault.schema._upstream import graphql_schema, validate_document
from memvault.schema.errors import DocumentInvalid, marked
from memvault.schema.limits import check_size

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema

# What a cached document holds, estimated: its text twice (the text, and the values of its
# comments and strings, which are copies), bytes per token of the parsed tree (nodes, tokens
# and locations: 520-613 measured with tracemalloc on graphql-core 3.3), and bytes per
# validation error kept (about 1,100-1,200).
TOKEN_BYTES = 600
ERROR_BYTES = 1500


@dataclass(slots=True)
class _Entry:
    document: DocumentNode
    weight: int  # estimated bytes
    errors: list[GraphQLError] | None = None  # None: not validated yet (DocumentInvalid each)


class DocumentStore:
    """Parsed documents and their validation errors, by query text, least recent out: at most
    ``maxsize`` documents and about ``max_cache_bytes`` (estimated) together.

    A document over ``max_bytes`` (UTF-8) is refused before it is parsed or kept; parsing stops
    at ``max_tokens``; validation runs Strawberry's rules plus ``extra_rules``.
    """

    def __init__(
        self,
        *,
        max_tokens: int,
        max_bytes: int,
        extra_rules: Sequence[type[ASTValidationRule]],
        maxsize: int,
        max_cache_bytes: int,
    ) -> None:
        self.max_tokens = max_tokens
        self.max_bytes = max_bytes
        self.extra_rules = tuple(extra_rules)
        self.maxsize = maxsize
        self.max_cache_bytes = max_cache_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.weight = 0  # estimated bytes of every entry
        self.parses = 0
        self.validations = 0
        self.hits = 0  # parse() answered from the cache
        self.misses = 0  # parse() that parsed (or refused) the document
        self._validated_for: GraphQLSchema | None = None
        self._rules: tuple[type[ASTValidationRule], ...] = ()

    def parse(self, query: str) -> DocumentNode:
        """The parsed ``query``; a ``GraphQLSyntaxError`` when it does not parse or is too large."""
        return self._entry(query, lookup=True).document

    def cache_counts(self) -> tuple[int, int]:
        """(hits, misses) of :meth:`parse` so far (``/metrics``)."""
        return self.hits, self.misses

    def errors(
        self, query: str, schema: GraphQLSchema, rules: tuple[type[ASTValidationRule], ...]
    ) -> list[GraphQLError]:
        """The validation errors of ``query`` (:class:`DocumentInvalid`)."""
        if schema is not self._validated_for or rules != self._rules:  # one schema per store in use
            for entry in self._entries.values():
                self._set_errors(entry, None)
            self._validated_for, self._rules = schema, rules
        entry = self._entry(query)
        errors = entry.errors
        if errors is None:
            every = (*rules, *self.extra_rules)
            errors = [*marked(validate_document(schema, entry.document, every), DocumentInvalid)]
            self.validations += 1
            self._set_errors(entry, errors)
            self._shrink()
        return errors

    def _entry(self, query: str, *, lookup: bool = False) -> _Entry:
        """``query``'s entry, parsed now if not kept; ``lookup``: counted as a hit or miss."""
        entry = self._entries.get(query)
        if entry is not None:
            self.hits += lookup
            self._entries.move_to_end(query)
            return entry
        self.misses += lookup
        size = check_size(query, self.max_bytes)
        document = parse(query, max_tokens=self.max_tokens)
        self.parses += 1
        entry = self._entries[query] = _Entry(document, 2 * size + TOKEN_BYTES * _tokens(document))
        self.weight += entry.weight
        self._shrink()
        return entry

    def _set_errors(self, entry: _Entry, errors: list[GraphQLError] | None) -> None:
        change = ERROR_BYTES * (len(errors or ()) - len(entry.errors or ()))
        entry.errors = errors
        entry.weight += change
        self.weight += change

    def _shrink(self) -> None:
        """Least recent out until within bounds; the newest entry stays whatever its weight."""
        entries = self._entries
        while len(entries) > 1 and (
            len(entries) > self.maxsize or self.weight > self.max_cache_bytes
        ):
            self.weight -= entries.popitem(last=False)[1].weight


def _tokens(document: DocumentNode) -> int:
    count = 0
    token = document.loc.start_token if document.loc else None
    while token is not None:
        count += 1
        token = token.next
    return count


class DocumentCache(SchemaExtension):
    """Serves parse and validation results from a shared :class:`DocumentStore`."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            context.graphql_document = self.store.parse(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and context.graphql_document is not None:
            context.pre_execution_errors = self.store.errors(
                context.query, graphql_schema(context.schema), context.validation_rules
            )
        yield
