"""``/health`` answers 503 naming what is wrong: an expected service missing or
stale, a faulted task, a store problem; and its view of instances is bounded
(issue "Hardening II": with the advisor or adapters killed it answered 200;
20,000 forged heartbeats made it answer 3 MB)."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec
from nats.aio.msg import Msg

from schemas.subjects import HEARTBEAT, STORE_STATS
from schemas.system import Heartbeat, StoreStats
from services.gateway.heartbeats import DROP_AFTER, STALE_AFTER, HeartbeatTracker
from services.gateway.service import GatewayService
from services.runtime.bus import Bus
from services.runtime.clock import ManualClock
from services.runtime.config import Config
from tests.gateway.conftest import running
from tests.support import poll


def beat(service: str, instance: str = "i1", faults: list[str] | None = None) -> bytes:
    hb = Heartbeat(service=service, instance=instance, version="0", pid=1, uptime_s=1.0, ts=0.0,
                   faults=faults or [])  # fmt: skip
    return msgspec.json.encode(hb)


async def health(gateway: GatewayService) -> tuple[int, dict[str, Any], int]:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.url + "/health") as r:
            raw = await r.read()
            return r.status, msgspec.json.decode(raw), len(raw)


def test_tracker_marks_stale_after_3_missed_and_drops_after_10() -> None:
    clock = ManualClock()
    tracker = HeartbeatTracker(clock, interval_s=1.0, max_instances=2)
    tracker.record(beat("advisor"))
    assert tracker.problems(["advisor"]) == []
    clock._t += STALE_AFTER + 0.5
    assert tracker.problems(["advisor"]) == [
        "service 'advisor': stale, last heartbeat 3.5s ago (more than 3 missed)"
    ]
    tracker.record(beat("a", "x"))
    tracker.record(beat("a", "y"))  # over the cap of 2: ignored, counted
    assert tracker.ignored == 1 and sum(map(len, tracker.snapshot().values())) == 2
    clock._t += DROP_AFTER + 1
    tracker.record(beat("a", "y"))  # the dropped ones make room
    assert {s: [i["instance"] for i in v] for s, v in tracker.snapshot().items()} == {"a": ["y"]}
    assert tracker.problems(["advisor"]) == ["service 'advisor': no heartbeat seen"]
    tracker.record(b'{"service": ' + b"[" * 5000)
    assert tracker.malformed == 1


async def test_a_missing_or_stale_expected_service_is_503_naming_it(
    config: Config, store: Any, bus: Bus
) -> None:
    config.gateway.expect_services = ["store", "advisor"]
    async with running(GatewayService, config, "gateway") as gateway:
        status, body, _ = await health(gateway)
        assert status == 503 and body["problems"] == ["service 'advisor': no heartbeat seen"]
        await bus.nc.publish(HEARTBEAT, beat("advisor"))

        async def healthy() -> bool:
            return (await health(gateway))[0] == 200

        await poll(healthy, timeout=5)

        async def stale() -> list[str]:
            status, body, _ = await health(gateway)
            return body["problems"] if status == 503 else []

        problems = await poll(stale, timeout=5)  # 3 x heartbeat_s (0.2 s) later
        assert problems[0].startswith("service 'advisor': stale, last heartbeat")


async def test_a_faulted_task_is_503_naming_service_and_task(
    config: Config, store: Any, bus: Bus
) -> None:
    async with running(GatewayService, config, "gateway") as gateway:
        await bus.nc.publish(HEARTBEAT, beat("store", "s9", ["task writer died: RecursionError"]))

        async def faulted() -> list[str]:
            status, body, _ = await health(gateway)
            return body["problems"] if status == 503 else []

        problems = await poll(faulted, timeout=5)
        assert problems == ["service 'store' (instance s9): task writer died: RecursionError"]


async def test_store_problems_are_503_with_their_sentences(config: Config, bus: Bus) -> None:
    stats = StoreStats(count=0, last_seq=0, stream_seq=0, file_bytes=0, dead_letters=0,
                       path="x", problems=["the JetStream stream was replaced"])  # fmt: skip

    async def reply(msg: Msg) -> None:
        await msg.respond(msgspec.json.encode(stats))

    sub = await bus.nc.subscribe(STORE_STATS, cb=reply)
    try:
        async with running(GatewayService, config, "gateway") as gateway:
            status, body, _ = await health(gateway)
        assert status == 503
        assert body["problems"] == ["store: the JetStream stream was replaced"]
        assert body["store"]["ok"] is False
    finally:
        await sub.unsubscribe()


FORGED = 2_000


async def test_forged_heartbeats_cannot_grow_health(config: Config, store: Any, bus: Bus) -> None:
    async with running(GatewayService, config, "gateway") as gateway:
        for i in range(FORGED):  # 8x the 256 instances tracked
            await bus.nc.publish(HEARTBEAT, beat("forged", f"i{i}"))
        await bus.nc.flush()

        async def all_seen() -> bool:
            t = gateway.heartbeats
            return sum(map(len, t.snapshot().values())) + t.ignored >= FORGED

        await poll(all_seen, timeout=20)
        _, body, size = await health(gateway)
    assert sum(map(len, body["services"].values())) <= config.gateway.max_instances
    assert body["heartbeats"]["ignored"] >= FORGED - config.gateway.max_instances
    assert size < 200_000, size
