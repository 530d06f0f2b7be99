"""Each distinct GraphQL document is parsed and validated once.

One extension in place of Strawberry's ``MaxTokensLimiter``, ``AddValidationRules``,
``ParserCache`` and ``ValidationCache``: one extension instance and two hooks per request
instead of four and six, and a validation cache keyed by the query text (Strawberry's hashes the
parsed document, which walks its whole tree on every request).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from graphql import parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema


class DocumentStore:
    """Parsed documents and their validation errors, by query text (bounded, least recent out).

    Parsing stops at ``max_tokens``; validation runs Strawberry's rules plus ``extra_rules``.
    """

    def __init__(
        self, *, max_tokens: int, extra_rules: Sequence[type[ASTValidationRule]], maxsize: int
    ) -> None:
        self.max_tokens = max_tokens
        self.extra_rules = tuple(extra_rules)
        self.parse = lru_cache(maxsize=maxsize)(self._parse)
        self._errors = lru_cache(maxsize=maxsize)(self._validate)
        self._schema: GraphQLSchema | None = None
        self._rules: tuple[type[ASTValidationRule], ...] = ()

    def _parse(self, query: str) -> DocumentNode:
        return parse(query, max_tokens=self.max_tokens)

    def errors(
        self, query: str, schema: GraphQLSchema, rules: tuple[type[ASTValidationRule], ...]
    ) -> list[GraphQLError]:
        """The validation errors of ``query`` (parsed by :meth:`parse` before)."""
        if schema is not self._schema or rules != self._rules:  # one schema per store in use
            self._errors.cache_clear()
            self._schema, self._rules = schema, rules
        return self._errors(query)

    def _validate(self, query: str) -> list[GraphQLError]:
        assert self._schema is not None
        return validate_document(self._schema, self.parse(query), (*self._rules, *self.extra_rules))


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
                context.query, context.schema._schema, context.validation_rules
            )
        yield
