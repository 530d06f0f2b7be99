"""Input rules shared by every entry point; each failure is a ``BadUserInput`` naming the field."""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from typing import TYPE_CHECKING, Any

from memvault.db.merge import MetadataPatch
from memvault.db.search import MAX_QUERY_CHARS, MAX_TERM_CHARS, MAX_TERMS, SearchTerms, tokens
from memvault.errors import BadUserInput

if TYPE_CHECKING:
    from collections.abc import Sequence

    from memvault.config import Settings

# A code point of the surrogate range: never text (json.loads turns an escaped pair into one code
# point, and keeps a lone "\ud800" escape as such); UTF-8, BSON and strict JSON cannot carry it.
SURROGATE = re.compile("[\ud800-\udfff]")

# Times a DateTime input may name, in milliseconds since the epoch (UTC): from the epoch (stored
# times and keys hold no negative numbers) to the last millisecond of year 9999 (the last one
# ISO 8601 text without an expanded year, and Python's datetime, can show).
MIN_TIME_MS = 0
MAX_TIME_MS = 253_402_300_799_999
TIME_RANGE = "1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z"


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in value)


def check_id(value: str, *, field: str, settings: Settings) -> str:
    """Ids: 1 to ``max_id_length`` characters, no control characters."""
    if not 1 <= len(value) <= settings.max_id_length:
        raise BadUserInput(
            f"{field} must be 1-{settings.max_id_length} characters, got {len(value)}", field=field
        )
    if _has_control(value):
        raise BadUserInput(
            f"{field} must not contain control characters or invalid Unicode", field=field
        )
    return value


def check_optional_text(value: str | None, *, field: str, settings: Settings) -> str | None:
    """Short optional strings (names, emails, roles): same length rule as ids."""
    if value is None:
        return None
    if len(value) > settings.max_id_length or _has_control(value):  # also emails, names, roles
        raise BadUserInput(
            f"{field} must be at most {settings.max_id_length} characters, no control characters "
            "or invalid Unicode",
            field=field,
        )
    return value


def check_email(value: str | None, *, settings: Settings) -> str | None:
    if value is None:
        return None
    check_optional_text(value, field="email", settings=settings)
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or " " in value:
        raise BadUserInput(f"email {value!r} is not an email address", field="email")
    return value


def check_text(value: str, *, field: str) -> str:
    """Any text that is stored or matched: valid Unicode (no lone surrogate)."""
    if SURROGATE.search(value):
        raise BadUserInput(f"{field} is not valid Unicode (it holds a lone surrogate)", field=field)
    return value


def check_content(value: str, *, field: str, settings: Settings) -> str:
    check_text(value, field=field)
    size = len(value.encode("utf-8"))
    if not value or size > settings.max_content_bytes:
        raise BadUserInput(
            f"{field} must be 1 character to {settings.max_content_bytes} bytes, got {size} bytes",
            field=field,
        )
    if "\x00" in value:
        raise BadUserInput(f"{field} must not contain NUL", field=field)
    return value


def check_metadata(
    value: Any, *, field: str, settings: Settings, merged: bool = False
) -> dict[str, Any]:
    """Metadata: a JSON object within the size, depth and key rules; ``merged`` says that
    ``value`` is the result of a merge (the messages say so)."""
    if not isinstance(value, dict):
        raise BadUserInput(f"{field} must be a JSON object", field=field)
    _check_value(value, field=field, settings=settings, depth=1)
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (ValueError, UnicodeEncodeError):
        raise BadUserInput(f"{field} is not valid JSON", field=field) from None
    if size > settings.max_metadata_bytes:
        raise BadUserInput(
            f"{field} {'after the merge would be' if merged else 'is'} {size} bytes encoded; "
            f"the limit is {settings.max_metadata_bytes}",
            field=field,
        )
    return value


def metadata_patch(value: Any, *, field: str, settings: Settings) -> MetadataPatch | None:
    """A metadata merge patch, checked, that checks its merged result too (every merge of a
    stored object goes through it); None when it changes nothing (omitted, null or ``{}``)."""
    if value is None:
        return None
    changes = check_metadata(value, field=field, settings=settings)
    if not changes:
        return None
    check = functools.partial(check_metadata, field=field, settings=settings, merged=True)
    return MetadataPatch(changes, check=check)


def _check_value(value: Any, *, field: str, settings: Settings, depth: int) -> None:
    if isinstance(value, dict):
        if depth > settings.max_metadata_depth:
            raise BadUserInput(
                f"{field} nests deeper than {settings.max_metadata_depth} levels", field=field
            )
        for key, item in value.items():
            _check_key(key, field=field, settings=settings)
            _check_value(item, field=f"{field}.{key}", settings=settings, depth=depth + 1)
    elif isinstance(value, list):
        if depth > settings.max_metadata_depth:
            raise BadUserInput(
                f"{field} nests deeper than {settings.max_metadata_depth} levels", field=field
            )
        for index, item in enumerate(value):
            _check_value(item, field=f"{field}[{index}]", settings=settings, depth=depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise BadUserInput(f"{field} must be a finite number", field=field)
    elif isinstance(value, str):
        if "\x00" in value:
            raise BadUserInput(f"{field} must not contain NUL", field=field)
        check_text(value, field=field)
    elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise BadUserInput(f"{field} is out of the 64-bit integer range", field=field)


def _check_key(key: Any, *, field: str, settings: Settings) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= settings.max_metadata_key_length:
        raise BadUserInput(
            f"{field}: keys must be 1-{settings.max_metadata_key_length} characters", field=field
        )
    if key.startswith("$") or "." in key or "\x00" in key:
        raise BadUserInput(
            f"{field}: key {key!r} must not start with '$' or contain '.' or NUL", field=field
        )
    if SURROGATE.search(key):
        raise BadUserInput(
            f"{field}: key {key!r} is not valid Unicode (it holds a lone surrogate)", field=field
        )


def check_filter_metadata(value: Any, *, settings: Settings) -> dict[str, Any]:
    """``filter.metadata``: top-level keys to scalar values, matched by equality."""
    if not isinstance(value, dict):
        raise BadUserInput("filter.metadata must be a JSON object", field="filter.metadata")
    for key, item in value.items():
        _check_key(key, field="filter.metadata", settings=settings)
        if isinstance(item, dict | list) or item is None:
            raise BadUserInput(
                f"filter.metadata.{key} must be a string, number or boolean",
                field="filter.metadata",
            )
        _check_value(item, field=f"filter.metadata.{key}", settings=settings, depth=1)
    return value


def check_time_ms(ms: int, *, what: str) -> int:
    """A time given as input (``what``, e.g. a DateTime's text): within ``MIN_TIME_MS`` to
    ``MAX_TIME_MS``, so that every stored time can be shown and ordered. (The DateTime scalar
    checks it, so it knows no field: graphql-core's message names the variable's path.)"""
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise BadUserInput(f"{what} is outside the accepted range, {TIME_RANGE}")
    return ms


def check_count(count: int, *, field: str, low: int, high: int) -> int:
    if not low <= count <= high:
        raise BadUserInput(f"{field} must be {low}-{high}, got {count}", field=field)
    return count


def check_distinct(values: Sequence[str | None], *, field: str, item: str) -> None:
    """No value given twice (None: not given); a repeat is named as ``field[i].item``."""
    first: dict[str, int] = {}
    for index, value in enumerate(values):
        if value is None:
            continue
        if value in first:
            raise BadUserInput(
                f"{field}[{index}].{item} repeats {field}[{first[value]}].{item} ({value!r})",
                field=f"{field}[{index}].{item}",
            )
        first[value] = index


SEARCH_PART = re.compile(r'(-?)"([^"]*)"?|(\S+)')
"""A part of a search query: a "phrase" (maybe -"excluded"), else a run of non-spaces."""


def check_search_query(query: str) -> SearchTerms:
    """Words, "quoted phrases" and -excluded words of ``query``; BAD_USER_INPUT when it is too
    long, has too many or too long terms, or nothing to look for. Anything else is text:
    operators and regex characters separate words and mean nothing."""
    if len(query) > MAX_QUERY_CHARS:
        raise BadUserInput(
            f"query must be at most {MAX_QUERY_CHARS} characters, got {len(query)}", field="query"
        )
    check_text(query, field="query")
    required: list[tuple[str, ...]] = []
    excluded: set[str] = set()
    count = 0
    for match in SEARCH_PART.finditer(query):
        minus, phrase, bare = match.groups()
        words = tokens(phrase if bare is None else bare.lstrip("-"))
        negative = bool(minus) or (bare is not None and bare.startswith("-"))
        if not words:
            continue
        count += len(words)
        if count > MAX_TERMS:
            raise BadUserInput(f"query must have at most {MAX_TERMS} words", field="query")
        if any(len(word) > MAX_TERM_CHARS for word in words):
            raise BadUserInput(
                f"query words must be at most {MAX_TERM_CHARS} characters", field="query"
            )
        if negative:
            excluded.update(words)
        elif phrase is not None:
            required.append(tuple(words))
        else:
            required.extend((word,) for word in words)
    if not required:
        raise BadUserInput("query must have a word to look for", field="query")
    return SearchTerms(tuple(dict.fromkeys(required)), frozenset(excluded))
