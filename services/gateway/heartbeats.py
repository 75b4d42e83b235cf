"""The last heartbeat of every service instance, for ``/health``.

An instance is *stale* after ``STALE_AFTER`` missed heartbeats and forgotten
after ``DROP_AFTER`` (a restarted service has a new instance id, so the old
one must go). The set is bounded: a heartbeat from a new instance while
``max_instances`` are tracked is ignored and counted (``ignored``), so a flood
of forged heartbeats cannot grow the gateway or its ``/health`` answer.
Heartbeats are decoded through ``schemas.limits`` (``malformed`` counts the
ones that are not heartbeats).
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import limits
from schemas.system import Heartbeat
from services.runtime.clock import Clock

STALE_AFTER = 3
DROP_AFTER = 10
MAX_HEARTBEAT_BYTES = 4096
"""A real heartbeat is ~200 bytes; this bounds /health at ``max_instances`` x 4 KiB."""

_decoder = msgspec.json.Decoder(Heartbeat)


class HeartbeatTracker:
    def __init__(self, clock: Clock, interval_s: float, max_instances: int = 256) -> None:
        self._clock = clock
        self.interval_s = interval_s
        self.max_instances = max_instances
        self._last: dict[tuple[str, str], tuple[Heartbeat, float]] = {}
        self.malformed = 0
        self.ignored = 0

    @property
    def stale_after_s(self) -> float:
        return STALE_AFTER * self.interval_s

    def record(self, raw: bytes) -> None:
        try:
            beat = limits.decode(_decoder, raw, max_bytes=MAX_HEARTBEAT_BYTES, what="heartbeat")
        except (msgspec.ValidationError, msgspec.DecodeError):
            self.malformed += 1
            return
        key, now = (beat.service, beat.instance), self._clock.monotonic()
        if key in self._last:
            del self._last[key]  # re-inserted last: the dict stays in last-seen order
        elif len(self._last) >= self.max_instances:
            self._expire(now)
            if len(self._last) >= self.max_instances:
                self.ignored += 1
                return
        self._last[key] = (beat, now)

    def _expire(self, now: float | None = None) -> None:
        """Forget instances silent past ``DROP_AFTER`` beats: the oldest are first in
        the dict, so this stops at the first fresh one (a flood of forged beats costs
        one look each, not a scan of every instance)."""
        now = self._clock.monotonic() if now is None else now
        limit = DROP_AFTER * self.interval_s
        while self._last:
            key, (_, seen) = next(iter(self._last.items()))
            if now - seen <= limit:
                break
            del self._last[key]

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Per service, its instances (newest heartbeat, ``age_s``, ``stale``)."""
        self._expire()
        now = self._clock.monotonic()
        out: dict[str, list[dict[str, Any]]] = {}
        for (service, _), (beat, seen) in sorted(self._last.items()):
            age = now - seen
            out.setdefault(service, []).append(
                {**msgspec.structs.asdict(beat), "age_s": round(age, 3),
                 "stale": age > self.stale_after_s}
            )  # fmt: skip
        return out

    def problems(self, expected: list[str]) -> list[str]:
        """Sentences for ``/health``: an expected service with no fresh instance,
        and every fresh instance whose heartbeat names faulted tasks."""
        snapshot = self.snapshot()
        out = []
        for name in expected:
            instances = snapshot.get(name, [])
            if not instances:
                out.append(f"service {name!r}: no heartbeat seen")
            elif all(i["stale"] for i in instances):
                age = min(i["age_s"] for i in instances)
                out.append(
                    f"service {name!r}: stale, last heartbeat {age:.1f}s ago "
                    f"(more than {STALE_AFTER} missed)"
                )
        now = self._clock.monotonic()
        for (name, instance), (beat, seen) in sorted(self._last.items()):
            if beat.faults and now - seen <= self.stale_after_s:
                out.append(f"service {name!r} (instance {instance}): {'; '.join(beat.faults)}")
        return out
