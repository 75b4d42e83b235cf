"""Time-ordered unique ids (UUIDv7, RFC 9562).

A time-ordered id keeps the store's UNIQUE index appending at the right edge
of its B-tree; a random uuid4 would scatter the inserts. Ids from one
generator are strictly increasing even within one millisecond (the 12-bit
``rand_a`` field is used as a counter, re-seeded each new millisecond).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from services.runtime.clock import Clock, SystemClock


class IdGenerator:
    def __init__(
        self, clock: Clock | None = None, randbytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._clock = clock or SystemClock()
        self._randbytes = randbytes
        self._last_ms = -1
        self._counter = 0
        self._prefix = ""
        """The first 15 characters of this millisecond's ids (``_uuid7``'s)."""

    def new(self) -> str:
        ms = int(self._clock.now() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms
            self._counter += 1
            if self._counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                ms += 1
                self._counter = 0
        else:
            self._counter = int.from_bytes(self._randbytes(2), "big") & 0x7FF
        if ms != self._last_ms or not self._prefix:
            self._prefix = f"{ms >> 16 & 0xFFFFFFFF:08x}-{ms & 0xFFFF:04x}-7"
        self._last_ms = ms
        rand_b = int.from_bytes(self._randbytes(8), "big") & ((1 << 62) - 1)
        # what _uuid7(ms, counter, rand_b) returns, without its 128-bit int
        low = rand_b & 0xFFFFFFFFFFFF
        return f"{self._prefix}{self._counter:03x}-{0x8000 | rand_b >> 48:04x}-{low:012x}"


def derived_id(parent: str, purpose: str) -> str:
    """A UUIDv7 determined by ``parent`` and ``purpose`` alone.

    For an event that must get the same id however often it is produced (an
    answer to a redelivered message, a seed published by two replicas), so
    JetStream drops the repeat by ``Nats-Msg-Id``. Its timestamp is the
    parent's when the parent is a UUIDv7 (so it sorts with the event it
    answers), else 0; its other bits come from sha256(parent, purpose).
    """
    digest = hashlib.sha256(f"{parent}\x00{purpose}".encode()).digest()
    ms = id_ms(parent) or 0
    rand = int.from_bytes(digest[:10], "big")
    return _uuid7(ms, (rand >> 62) & 0xFFF, rand & ((1 << 62) - 1))


def id_ms(value: str) -> int | None:
    """The Unix time in milliseconds a UUIDv7 carries, or None for anything else."""
    hexed = value.replace("-", "")
    if len(hexed) != 32 or hexed[12] != "7":
        return None
    try:
        return int(hexed[:12], 16)
    except ValueError:  # 32 characters, but not hex: not a UUID
        return None


def _uuid7(ms: int, rand_a: int, rand_b: int) -> str:
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
