"""Bounds on every message gpuroute accepts or sends: size, JSON nesting, subjects.

NATS refuses a message over ``max_payload`` (1 MiB by default) and closes the
connection that sent it; msgspec decodes nesting by recursion and raises
``RecursionError`` about 1,000 levels down. So every size is bounded well
below what the wire allows, and every wrapper gpuroute puts around a message
(a dead letter's headers, the ``stored.*`` envelope, a store read page) has
room for the largest message it may wrap:

    MAX_EVENT_BYTES  256 KiB   one encoded event, where it is published and where it is stored
    MAX_PAGE_BYTES   512 KiB   the events of one store read reply (always at least one event)
    MAX_JSON_DEPTH   64        nesting of any JSON gpuroute decodes (an event, a body, a frame)

:func:`decode` is the one way bytes from outside become typed values: it
checks size and depth first and turns every failure to decode (including
invalid UTF-8 inside a string and ``RecursionError``) into
``msgspec.DecodeError`` with a readable message, so a caller that handles
``DecodeError`` and ``ValidationError`` handles every bad message.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec

T = TypeVar("T")

MAX_EVENT_BYTES = 256 * 1024
MAX_PAGE_BYTES = 512 * 1024
MAX_JSON_DEPTH = 64
MAX_SUBJECT_BYTES = 256
"""A subject or subject pattern (NATS's control line is 4 KiB; ours are short)."""
MAX_PATTERNS = 32
"""Subject patterns in one subscription or read."""
MAX_SEQ = 2**63 - 1
"""The largest position SQLite can hold."""
MAX_TEXT = 2000
"""A free-text field a person types (notes, descriptions)."""
MAX_NAME = 128
"""An identifier a person types (ids, names, keys)."""

Position = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SUBJECT_BYTES)]

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (strings skipped).

    Cheap when it cannot be deep: fewer opening brackets than the limit is
    answered from two C-level counts."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for b in brackets:
        if b in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def check_json(
    raw: bytes,
    *,
    max_bytes: int | None = None,
    max_depth: int | None = MAX_JSON_DEPTH,
    what: str = "JSON",
) -> None:
    """Raise ``msgspec.DecodeError`` naming the limit when ``raw`` is larger than
    ``max_bytes`` or nested deeper than ``max_depth`` (None: not checked)."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise msgspec.DecodeError(f"{what} is {len(raw)} bytes, over the limit of {max_bytes}")
    if max_depth is not None and raw.count(b"[") + raw.count(b"{") > max_depth:
        depth = json_depth(raw)
        if depth > max_depth:
            raise msgspec.DecodeError(
                f"{what} is nested {depth} levels deep, over the limit of {max_depth}"
            )


def decode(
    decoder: msgspec.json.Decoder[T],
    raw: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int | None = None,
    max_depth: int | None = MAX_JSON_DEPTH,
    what: str = "JSON",
) -> T:
    """``decoder.decode(raw)`` after the size and depth checks; every failure to
    decode is a ``msgspec.DecodeError`` (type mismatches stay ``ValidationError``).

    ``max_depth=None`` skips the depth scan, for messages whose nested parts are
    kept as ``msgspec.Raw`` (a store page, a ``stored.*`` message): msgspec then
    builds nothing deep, and a ``RecursionError`` while skipping is still caught."""
    # a str with a lone surrogate cannot be UTF-8: keep it, so decoding names it
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    check_json(data, max_bytes=max_bytes, max_depth=max_depth, what=what)
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise
    except UnicodeDecodeError:
        # msgspec reports the offset inside the string it was decoding, not in ``raw``
        raise msgspec.DecodeError(f"invalid UTF-8 inside a string of the {what}") from None
    except RecursionError:
        raise msgspec.DecodeError(f"{what} is nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:
        raise msgspec.DecodeError(f"cannot decode {what}: {e}") from None


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def decoder_for(type_: Any) -> msgspec.json.Decoder[Any]:
    """One decoder per type, built once and reused (msgspec's perf tips)."""
    found = _DECODERS.get(type_)
    if found is None:
        found = _DECODERS[type_] = msgspec.json.Decoder(type_)
    return found


_ANY = decoder_for(Any)


def decode_any(raw: bytes | str, **bounds: Any) -> Any:
    """Free-form JSON (no type) under the same bounds as :func:`decode`."""
    return decode(_ANY, raw, **bounds)
