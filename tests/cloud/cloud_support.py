"""Helpers of the cloud service tests: the service in-process on a bus of its own,
events read back from the store, and the cap checked from the events alone."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from schemas import Event, decode_event
from schemas.subjects import STORE_READ
from schemas.system import StoreReadRequest, decode_page
from services.cloud.ledger import Ledger, LedgerProjection, apply, day_of
from services.cloud.pods import PodClient
from services.cloud.service import CloudService
from services.runtime.bus import Bus
from services.runtime.clock import Clock
from services.runtime.config import Config


@contextlib.asynccontextmanager
async def running_cloud(
    config: Config,
    *,
    clock: Clock | None = None,
    client: PodClient | None = None,
    **settings: Any,
) -> AsyncIterator[CloudService]:
    """The cloud service with ``[cloud]`` ``settings`` (one check at its start, then
    every 30 s unless set); without ``client`` the service picks its own, with
    ``[cloud.pods] dry_run`` on."""
    settings.setdefault("check_interval_s", 30.0)
    if client is None:
        settings.setdefault("pods", msgspec.structs.replace(config.cloud.pods, dry_run=True))
    cloud = msgspec.structs.replace(config.cloud, **settings)
    config = msgspec.structs.replace(config, cloud=cloud)
    bus = await Bus.connect(config.nats.url or "", source="cloud", clock=clock)
    service = CloudService(bus, config, client=client)
    await service.start()
    await service.follower.ready.wait()
    try:
        yield service
    finally:
        await service.stop()
        await bus.close()


async def stored(bus: Bus, patterns: list[str]) -> list[Event]:
    """Every stored event matching ``patterns``, in log order."""
    out: list[Event] = []
    after = 0
    while True:
        req = StoreReadRequest(patterns=patterns, after=after, limit=1000)
        page = decode_page(await bus.call_raw(STORE_READ, msgspec.json.encode(req)))
        for item in page.events:
            out.append(decode_event(bytes(item.event)))
            after = item.seq
        if not page.more:
            return out


def cap_violations(events: list[Event], cap_usd: float) -> list[str]:
    """Fold ``events`` one by one; every point where a day's spent + reserved
    passed ``cap_usd`` (empty: the cap held all along)."""
    state = LedgerProjection().initial()
    bad: list[str] = []
    cap_u = round(cap_usd * 1_000_000)
    for event in events:
        apply(state, event)
        day = day_of(event.ts)
        total = state.spent(day) + state.reserved(day)
        if total > cap_u:
            bad.append(f"{event.type} {event.id}: {total} > {cap_u}")
    return bad


def fold(events: list[Event]) -> Ledger:
    state = LedgerProjection().initial()
    for event in events:
        apply(state, event)
    return state
