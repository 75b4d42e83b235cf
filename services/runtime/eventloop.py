"""The event loop ``gpuroute up`` and ``gpuroute serve`` run on.

uvloop (libuv's loop for asyncio) when it is installed, a dependency on every
platform it supports, and ``asyncio``'s own loop otherwise or when
``GPUROUTE_LOOP=asyncio`` says so. The services are the same code on both;
uvloop spends less CPU in the loop and its sockets (in ``bench/budget.py``
the budget ~10% and the store ~6% less per change, docs/perf.md). Tests run the
services in-process on asyncio's loop and as ``gpuroute`` processes on this one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from services.runtime.errors import ConfigError

T = TypeVar("T")

LOOP_ENV = "GPUROUTE_LOOP"
LOOPS = ("uvloop", "asyncio")


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: what :func:`run` will use. Raises
    :class:`ConfigError` naming ``GPUROUTE_LOOP`` when it holds anything else,
    or asks for uvloop where it is not installed."""
    raw = os.environ.get(LOOP_ENV, "")
    wanted = raw.strip().lower()
    if wanted not in ("", *LOOPS):
        raise ConfigError(LOOP_ENV, f"{raw[:40]!r}: expected one of {', '.join(LOOPS)}")
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError as e:
        if wanted == "uvloop":
            raise ConfigError(LOOP_ENV, f"'uvloop', but it does not load here: {e}") from e
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T], loop: str | None = None) -> T:
    """``asyncio.run(main)`` on ``loop`` (default: :func:`loop_name`)."""
    if (loop or loop_name()) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
