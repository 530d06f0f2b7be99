"""Encoding a GraphQL response: capped at ``MEMVAULT_MAX_RESPONSE_BYTES``, large ones off the loop.

The size is known before anything is encoded: a walk adds up the lengths of the response's
strings (a lower bound of its JSON size), and stops as soon as that passes the cap, so a response
that repeats a large string many times is refused without ever being built. A response that ends
up over the cap once encoded (escapes) is refused too.

Encoding holds the interpreter lock for as long as one ``orjson.dumps`` call takes (about 1 ms per
MB), so a large response is encoded in a worker thread, in pieces of about ``PIECE_BYTES`` each:
between two pieces the event loop runs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from memvault.errors import PayloadTooLarge

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

INLINE_BYTES = 256 * 1024
"""Responses estimated below this are encoded at once, on the event loop (well under 1 ms)."""
PIECE_BYTES = 256 * 1024
INLINE_CONTAINERS = 5_000
"""Objects and lists the walk visits on the loop; a response with more is measured off it."""


class EncodedResponse(dict[str, Any]):
    """A response (its ``data``, ``errors``, ...) with its encoded ``body``."""

    def __init__(self, response: dict[str, Any], body: bytes) -> None:
        super().__init__(response)
        self.body = body


class TooLarge(Exception):
    """The response is larger than the cap."""


async def encode_capped(
    response: dict[str, Any], *, cap: int, encode: Callable[[object], bytes]
) -> bytes:
    """``response`` encoded; :class:`TooLarge` when that would be more than ``cap`` bytes."""
    estimate = string_bytes(response, stop=min(cap, INLINE_BYTES), budget=INLINE_CONTAINERS)
    if estimate is not None and estimate <= INLINE_BYTES:
        body = encode(response)
    else:
        body = await asyncio.to_thread(_encode_in_pieces, response, cap, encode)
    if len(body) > cap:
        raise TooLarge
    return body


def string_bytes(root: dict[str, Any] | list[Any], *, stop: int, budget: int) -> int | None:
    """A lower bound of ``root``'s JSON size (its strings' lengths and quotes, 2 per container, 1
    per other value), counted until it passes ``stop``; None past ``budget`` containers."""
    total = containers = 0
    stack: list[Any] = [root]
    pop, push = stack.pop, stack.append
    while stack:
        value = pop()
        containers += 1
        if containers > budget:
            return None
        total += 2
        for item in value.values() if type(value) is dict else value:
            kind = type(item)
            if kind is str:
                total += len(item) + 2
            elif kind is dict or kind is list:
                push(item)
            else:
                total += 1
        if total > stop:
            return total
    return total


def _encode_in_pieces(root: dict[str, Any], cap: int, encode: Callable[[object], bytes]) -> bytes:
    """In a worker thread: measure every container (:class:`TooLarge` past ``cap``), then
    encode those larger than ``PIECE_BYTES`` member by member and the others in one call each."""
    large: set[int] = set()

    def measure(value: Any) -> int:  # a dict or a list
        size = 2
        for item in value.values() if type(value) is dict else value:
            kind = type(item)
            if kind is str:
                size += len(item) + 2
            elif kind is dict or kind is list:
                size += measure(item)
            else:
                size += 1
        if size > cap:
            raise TooLarge
        if size > PIECE_BYTES:
            large.add(id(value))
        return size

    measure(root)
    return b"".join(_pieces(root, large, encode))


def _pieces(value: Any, large: set[int], encode: Callable[[object], bytes]) -> Iterator[bytes]:
    if id(value) not in large:
        yield encode(value)
    elif type(value) is dict:
        separator = b"{"
        for key, item in value.items():
            yield separator + encode(key) + b":"
            yield from _pieces(item, large, encode)
            separator = b","
        yield b"}" if separator == b"," else b"{}"
    else:
        separator = b"["
        for item in value:
            yield separator
            yield from _pieces(item, large, encode)
            separator = b","
        yield b"]" if separator == b"," else b"[]"


def too_large(cap: int) -> dict[str, Any]:
    """The answer in place of a response over ``cap`` bytes."""
    return PayloadTooLarge(
        f"The response would be larger than {cap} bytes (MEMVAULT_MAX_RESPONSE_BYTES) and was"
        " not sent; ask for fewer or smaller items. The operation itself ran (a mutation's"
        " writes stand)."
    ).as_response()
