"""The fast path: every shortcut memvault takes past Strawberry's and graphql-core's own work.

- ``executor.py``: plain leaves and lists of plain objects completed without graphql-core's
  per-field bookkeeping; lean resolvers called without Strawberry's argument conversion;
- ``document_cache.py``: each distinct document parsed and validated once (the limits with it);
- ``lean.py``: plain operations executed without Strawberry's per-request extension machinery
  (the HTTP view's direct path);
- ``lookahead.py``: memory reads fetch only the stored fields the query selects.

:func:`install` applies them all, or none: it refuses a schema using a feature they bypass, and
``MEMVAULT_FAST_PATH=off`` turns them off. Either way the schema then runs as plain Strawberry
(with every limit, through Strawberry extensions) and answers the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from graphql import GraphQLObjectType
from strawberry.permission import PermissionExtension

from memvault.schema._upstream import DEFINITION_BACKREF, StrawberryField, graphql_schema
from memvault.schema.cost import CostLimited, cost_limited
from memvault.schema.fastpath.document_cache import DocumentCache, DocumentStore
from memvault.schema.fastpath.executor import Executor, optimise
from memvault.schema.limits import validation_rules

if TYPE_CHECKING:
    from memvault.config import Settings
    from memvault.schema import MemvaultSchema

log = logging.getLogger("memvault.graphql")

# Distinct documents whose parse and validation are cached (clients send a few fixed documents),
# and the estimated bytes they may hold together (a document of 5,000 tokens holds about 3 MB).
DOCUMENT_CACHE_SIZE = 512
DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024


def install(schema: MemvaultSchema, settings: Settings) -> bool:
    """Apply every shortcut to ``schema`` (built without extensions, with a cost-limited
    Strawberry executor); False, and ``schema`` unchanged, when ``settings.fast_path`` is off or
    the schema uses a feature the shortcuts bypass (logged as a warning)."""
    if not settings.fast_path:
        log.info("fast path off (MEMVAULT_FAST_PATH): the schema runs as plain Strawberry")
        return False
    reason = bypassed_feature(schema)
    if reason is not None:
        log.warning("fast path refused: the schema uses %s; it runs as plain Strawberry", reason)
        return False
    documents = DocumentStore(
        max_tokens=settings.max_tokens,
        max_bytes=settings.max_query_bytes,
        extra_rules=validation_rules(settings),
        maxsize=DOCUMENT_CACHE_SIZE,
        max_cache_bytes=DOCUMENT_CACHE_BYTES,
    )
    # A factory: one extension instance per request. execute_lean stands in for its work.
    schema.extensions = (lambda: DocumentCache(documents),)
    plain: type = schema.execution_context_class
    assert issubclass(plain, CostLimited)  # as bypassed_feature checked
    schema.execution_context_class = cost_limited(plain.query_cost, Executor)
    schema.documents = documents
    optimise(schema)
    schema.fast_path = True
    return True


def bypassed_feature(schema: MemvaultSchema) -> str | None:
    """What ``schema`` uses that the shortcuts would bypass, or None."""
    if schema.exception_handlers:  # lean resolvers call resolvers without Strawberry's handlers
        return "exception_handlers"
    if schema.config.default_resolver is not getattr:  # plain leaves read attributes directly
        return "a custom default_resolver"
    if schema.config.enable_experimental_incremental_execution:  # execute_lean runs `execute`
        return "incremental execution (@defer/@stream)"
    # Their hooks and middleware (directives run as one): execute_lean runs none of them.
    extensions = sorted({type(extension).__name__ for extension in schema.get_extensions()})
    if extensions:
        return f"schema extensions ({', '.join(extensions)})"
    executor = schema.execution_context_class
    if executor.__bases__ != (CostLimited,):  # what build_schema gives: no subclass of another
        return f"its own execution_context_class ({executor.__name__})"
    for named_type in graphql_schema(schema).type_map.values():
        if not isinstance(named_type, GraphQLObjectType):
            continue
        for name, graphql_field in named_type.fields.items():
            field = graphql_field.extensions.get(DEFINITION_BACKREF)
            if not isinstance(field, StrawberryField):
                continue
            # Permission checks run per field (the shortcuts skip those fields); any other field
            # extension may read what a lookahead projection leaves out.
            if any(not isinstance(ext, PermissionExtension) for ext in field.extensions):
                return f"field extensions ({named_type.name}.{name})"
    return None
