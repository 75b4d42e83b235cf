"""The strict form of a message type, derived from it in one place.

Messages between services are lenient (an older service skips the fields a
newer one added, ``STYLE.md``); where a person types the input (an HTTP body,
a query, a config or seed file) an unknown field is a typo and must be an
error naming it. Both forms are the same type: :func:`strict` derives the
strict one from the message Struct, at every level of nesting (a field typed
with a Struct, or a list, tuple, dict, union or ``Annotated`` of one, gets the
strict form of that Struct too), so no strict twin is ever written by hand.

The strict type is a subclass of the lenient one (every field, default, bound
and ``__post_init__`` check inherited): code takes the lenient type and gets
either. Its name is the lenient name plus ``Body``; the same lenient type
always gives the same strict type. A strict value compares unequal to the
same lenient one (msgspec compares types): :func:`lenient` turns it back
where a value is kept, compared or recorded.
"""

from __future__ import annotations

import functools
import operator
import types
import typing
from typing import Annotated, Any, TypeVar, Union, cast, get_args, get_origin

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


def strict(cls: type[S]) -> type[S]:
    """``cls`` with ``forbid_unknown_fields`` at every level (see the module docstring)."""
    return cast(type[S], _strict(cls))


def lenient(value: S) -> S:
    """``value`` as the lenient type its strict type was derived from, at every level
    (``value`` itself when it is not of a strict type)."""
    base = _LENIENT.get(type(value))
    if base is None:
        return value
    return cast(S, msgspec.convert(msgspec.to_builtins(value), base))


_LENIENT: dict[type[msgspec.Struct], type[msgspec.Struct]] = {}


@functools.cache
def _strict(cls: type[msgspec.Struct]) -> type[msgspec.Struct]:
    if cls.__struct_config__.forbid_unknown_fields:
        return cls
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: list[Any] = []
    for f in msgspec.structs.fields(cls):
        hint = hints[f.name]
        stricter = _rewrite(hint)
        if stricter is hint:
            continue  # inherited as it is
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, stricter, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, stricter, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, stricter))
    config = cls.__struct_config__
    derived = msgspec.defstruct(
        f"{cls.__name__}Body",
        fields,
        bases=(cls,),
        module=cls.__module__,
        frozen=config.frozen,
        kw_only=True,
        forbid_unknown_fields=True,
    )
    derived.__doc__ = cls.__doc__
    _LENIENT[derived] = cls
    return derived


def _rewrite(hint: Any) -> Any:
    """``hint`` with every Struct in it replaced by its strict form (``hint`` itself
    when it holds none, so a caller can tell by identity)."""
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return _strict(hint)
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        inner = _rewrite(args[0])
        return hint if inner is args[0] else Annotated[(inner, *hint.__metadata__)]
    if not args:
        return hint
    new = tuple(_rewrite(a) for a in args)
    if all(n is a for n, a in zip(new, args, strict=True)):
        return hint
    if origin is Union or origin is types.UnionType:
        return functools.reduce(operator.or_, new)
    return origin[new]
