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
from tests.support import EventWatch, Folds


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


async def read_stored(bus: Bus, patterns: list[str]) -> list[Event]:
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


async def cloud_folded(
    watch: EventWatch, cloud: CloudService, *followers: Folds, timeout: float = 5.0
) -> None:
    """Wait until every ``cloud.pod.*`` event ``cloud`` has written so far is
    stored and folded by ``followers`` (the schedulers' pod views): the service
    applies its own events as it writes them (``state.n`` counts them), everyone
    else folds them from the store. A follower's position moves only with the
    events it follows, so the wait is for the last pod event, not the last one."""
    n = cloud.state.n
    if n == 0:
        return
    await watch.first("cloud.>", where=lambda e: e.payload.n >= n, timeout=timeout)
    last = max(seq for seq, e in watch.events
               if e.type.startswith("cloud.pod.") and e.payload.n <= n)  # fmt: skip
    for follower in followers:
        assert await follower.wait_position(last, timeout), f"cloud.pod.* at {last} not folded"


async def folded_all(
    watch: EventWatch, follower: Folds, n: int, pattern: str, where: Any, timeout: float = 10.0
) -> None:
    """Wait until ``n`` events of ``pattern`` (and ``where``) are stored and ``follower``
    folded them all (:meth:`EventWatch.folded` waits for the first one only)."""
    ids = {e.id for e in await watch.count(n, pattern, where, timeout)}
    last = max(seq for seq, e in watch.events if e.id in ids)
    assert await follower.wait_position(last, timeout), f"{pattern} at {last} not folded"


async def read_through(
    watch: EventWatch, bus: Bus, n: int, patterns: list[str], timeout: float = 10.0
) -> list[Event]:
    """Every stored event matching ``patterns`` (:func:`read_stored`) once the
    cloud service's ``n``-th event (its ``state.n``) is stored."""
    if n:
        await watch.first("cloud.>", where=lambda e: e.payload.n >= n, timeout=timeout)
    return await read_stored(bus, patterns)


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
