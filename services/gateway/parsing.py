"""The one body decoder and the one query (and path) parser of every route.

Bodies are JSON whatever their Content-Type (``curl -d '{...}'`` works); an
empty body means every field's default. A body is read within
``[gateway] request_timeout_s`` (a shorter body than its Content-Length is a
408 and the connection closes), at most ``client_max_size`` bytes (413), and
decoded through :func:`schemas.limits.decode`: invalid UTF-8, nesting beyond
``MAX_JSON_DEPTH`` and every msgspec failure are 400s naming what is wrong.

Query parameters and path segments are strings converted to the route's
strict request Struct ("5" becomes 5); a 400 names every parameter the route
does not know, a repeated one, and the first bad value (msgspec's message with
its path, e.g. ``Expected `int` <= 9223372036854775807 - at `$.after```).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
import msgspec.inspect
from aiohttp import web

from schemas import limits
from services.gateway.errors import BadRequest, RequestTimeout
from services.gateway.state import SETTINGS

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

MAX_BODY_BYTES = limits.MAX_EVENT_BYTES
"""A body becomes (part of) an event at most, so it is bounded like one."""


async def read_raw(request: web.Request) -> bytes:
    """The body's bytes, within the request time bound (408 otherwise)."""
    timeout = request.app[SETTINGS].request_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {timeout:g}s "
            f"(Content-Length {request.content_length}); the connection is closed"
        ) from None


async def read_body(request: web.Request, type_: type[T]) -> T:
    """The JSON body as ``type_`` (``Any`` for free-form JSON); empty means ``{}``."""
    raw = await read_raw(request)
    if not raw.strip():
        raw = b"{}"
    value: T = limits.decode(limits.decoder_for(type_), raw, max_bytes=MAX_BODY_BYTES, what="JSON")
    return value


def parse_query(request: web.Request, type_: type[S]) -> S:
    """The query string as ``type_`` (see the module docstring). A list field is
    given by repeating its parameter (``?types=job.&types=flags.``, OpenAPI's
    default ``form`` style); any other repeated parameter is a 400."""
    lists = _list_fields(type_)
    params: dict[str, Any] = {}
    for name in request.query:
        if name in params:
            continue
        values = request.query.getall(name)
        if name in lists:
            params[name] = values
        elif len(values) > 1:
            raise BadRequest(f"invalid query: parameter `{_clip(name)}` is given more than once")
        else:
            params[name] = values[0]
    return convert_params(params, type_, what="query")


_lists: dict[type[msgspec.Struct], frozenset[str]] = {}
_known: dict[type[Any], list[str]] = {}


def _list_fields(type_: type[msgspec.Struct]) -> frozenset[str]:
    """The encoded names of ``type_``'s fields that hold a list (optional or not)."""
    names = _lists.get(type_)
    if names is None:
        info = msgspec.inspect.type_info(type_)
        fields = info.fields if isinstance(info, msgspec.inspect.StructType) else ()
        names = _lists[type_] = frozenset(f.encode_name for f in fields if _is_list(f.type))
    return names


def _is_list(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_is_list(u) for u in t.types)
    return isinstance(t, (msgspec.inspect.ListType, msgspec.inspect.SetType))


def path_params(request: web.Request, type_: type[S], **extra: Any) -> S:
    """The route's path segments (plus ``extra`` fields) as ``type_``, so a path
    ``{id}`` meets the same bounds as the same field in a body."""
    return convert_params({**request.match_info, **extra}, type_, what="path", known_only=False)


def convert_params(
    params: Mapping[str, Any], type_: type[S], *, what: str = "query", known_only: bool = True
) -> S:
    """String parameters as ``type_``; every failure is a :class:`BadRequest`."""
    known = _known.get(type_)
    if known is None:  # fields() evaluates the annotations: ~1.4 ms a call
        known = _known[type_] = [f.encode_name for f in msgspec.structs.fields(type_)]
    problems = []
    unknown = sorted(set(params) - set(known))
    if unknown and known_only:
        names = ", ".join(f"`{_clip(name)}`" for name in unknown[:10])
        plural = "s" if len(unknown) > 1 else ""
        problems.append(f"unknown parameter{plural} {names} (known: {', '.join(known) or 'none'})")
    value: S | None = None
    # a lone surrogate (from a percent-escape) cannot be sent on to a service
    not_text = [k for k, v in params.items() if isinstance(v, str) and not _encodable(v)]
    try:
        if not_text:
            raise ValueError(f"`{_clip(not_text[0])}` is not valid UTF-8 text")
        value = msgspec.convert(
            {k: v for k, v in params.items() if k in known}, type_, strict=False
        )
    except msgspec.ValidationError as e:
        problems.append(str(e))
    except (ValueError, TypeError, OverflowError) as e:
        problems.append(str(e))
    if problems or value is None:
        raise BadRequest(f"invalid {what}: " + "; ".join(problems))
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _clip(text: str, n: int = 64) -> str:
    text = text.encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= n else text[:n] + "..."
