"""The last heartbeat of every service instance, for ``/health``."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.system import Heartbeat
from services.runtime.clock import Clock

_decoder = msgspec.json.Decoder(Heartbeat)


class HeartbeatTracker:
    """Keeps the newest heartbeat per (service, instance); a heartbeat older
    than ``stale_after_s`` is reported stale, not dropped."""

    def __init__(self, clock: Clock, stale_after_s: float) -> None:
        self._clock = clock
        self._stale_after = stale_after_s
        self._last: dict[tuple[str, str], tuple[Heartbeat, float]] = {}
        self.malformed = 0

    def record(self, raw: bytes) -> None:
        try:
            beat = _decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            self.malformed += 1
            return
        self._last[(beat.service, beat.instance)] = (beat, self._clock.monotonic())

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        now = self._clock.monotonic()
        out: dict[str, list[dict[str, Any]]] = {}
        for (service, _), (beat, seen) in sorted(self._last.items()):
            age = now - seen
            out.setdefault(service, []).append(
                {**msgspec.structs.asdict(beat), "age_s": round(age, 3),
                 "stale": age > self._stale_after}
            )  # fmt: skip
        return out
