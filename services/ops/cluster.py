"""What doctor and ``/metrics`` read over NATS, in one pass: :func:`observe`.

It asks, all at once and each within ``listen_s``: JetStream's account, the
event and dead-letter streams, the store's durable consumer, the store's
stats, the budget's snapshot, the scheduler's job counts, every service's
heartbeat (after ``svc.ping``) and ``$SRV.STATS`` of every ``nats.micro``
service. Whatever does not answer is left None/empty with the reason in
``errors``; nothing here raises for a part of gpuroute that is down. The
connection's user needs read-only JetStream INFO and ``$SRV`` requests (the
gateway's permissions give both).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerInfo, StreamInfo

from schemas import limits
from schemas.budget import SNAPSHOT, BudgetSnapshot
from schemas.scheduler import STATS as SCHEDULER_STATS
from schemas.scheduler import SchedulerStats
from schemas.subjects import DLQ_STREAM, HEARTBEAT, PING, STORE_STATS, STREAM
from schemas.system import Heartbeat, StoreStats

STORE_DURABLE = "store"
"""The store's consumer (services/store/service.py ``durable``)."""
MAX_REPLY_BYTES = 256 * 1024
SRV_PREFIX = "gpuroute-"
"""``nats.micro`` names of gpuroute services: ``gpuroute-<service>``."""

_beat = msgspec.json.Decoder(Heartbeat)
_stats = msgspec.json.Decoder(StoreStats)
_budget = msgspec.json.Decoder(BudgetSnapshot)
_scheduler = msgspec.json.Decoder(SchedulerStats)
_any = msgspec.json.Decoder(dict[str, Any])


class Observed(msgspec.Struct, kw_only=True):
    server_version: str | None = None
    account: dict[str, Any] | None = None
    stream: StreamInfo | None = None
    stream_span: tuple[float, float] | None = None
    """The event stream's first and last message times (epoch s); None: empty."""
    dlq: StreamInfo | None = None
    consumer: ConsumerInfo | None = None
    store: StoreStats | None = None
    budget: BudgetSnapshot | None = None
    scheduler: SchedulerStats | None = None
    heartbeats: dict[str, list[Heartbeat]] = {}
    """Per service, one heartbeat per instance seen while listening."""
    srv: dict[str, list[dict[str, Any]]] = {}
    """Per service (``gpuroute-`` stripped), each instance's ``$SRV.STATS`` reply."""
    errors: dict[str, str] = {}
    """What did not answer, and why (``stream``, ``store``, ``budget``...)."""


async def _guard(errors: dict[str, str], key: str, coro: Any) -> Any:
    try:
        return await coro
    except Exception as e:  # every failure of a probe is evidence, not a crash
        errors[key] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        return None


async def _request(nc: Client, subject: str, decoder: Any, timeout: float) -> Any:
    msg = await nc.request(subject, b"{}", timeout=timeout)
    if msg.headers and msg.headers.get("Nats-Service-Error"):
        raise RuntimeError(msg.headers["Nats-Service-Error"])
    return limits.decode(decoder, msg.data, max_bytes=MAX_REPLY_BYTES, max_depth=None,
                         what=subject)  # fmt: skip


async def _account(nc: Client, timeout: float) -> dict[str, Any]:
    msg = await nc.request("$JS.API.INFO", b"", timeout=timeout)
    info: dict[str, Any] = limits.decode(_any, msg.data, max_bytes=MAX_REPLY_BYTES, what="account")
    if "error" in info:
        raise RuntimeError(str(info["error"].get("description", info["error"])))
    return info


def _epoch(text: object) -> float | None:
    """An RFC 3339 time of nats-server (nanoseconds cut to micro) as epoch seconds."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None  # the zero time: no message
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


async def _stream(nc: Client, name: str, timeout: float, seen: Observed) -> StreamInfo:
    """STREAM.INFO; nats-py's own drops ``first_ts``/``last_ts``, which growth needs."""
    msg = await nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=timeout)
    info = limits.decode(_any, msg.data, max_bytes=MAX_REPLY_BYTES, max_depth=None,
                         what=f"stream {name}")  # fmt: skip
    if "error" in info:
        raise RuntimeError(str(info["error"].get("description", info["error"])))
    state = info.get("state") or {}
    first, last = _epoch(state.get("first_ts")), _epoch(state.get("last_ts"))
    if first is not None and last is not None:
        seen.stream_span = (first, last)
    found: StreamInfo = StreamInfo.from_response(info)
    return found


async def observe(nc: Client, listen_s: float) -> Observed:
    """Everything doctor and ``/metrics`` need from NATS, within about ``listen_s``."""
    seen = Observed()
    errors = seen.errors
    beats: dict[tuple[str, str], Heartbeat] = {}
    srv: list[dict[str, Any]] = []

    async def on_beat(msg: Msg) -> None:
        with contextlib.suppress(msgspec.MsgspecError):
            b = limits.decode(_beat, msg.data, max_bytes=4096, what="heartbeat")
            beats[(b.service, b.instance)] = b

    async def on_srv(msg: Msg) -> None:
        with contextlib.suppress(msgspec.MsgspecError):
            srv.append(limits.decode(_any, msg.data, max_bytes=MAX_REPLY_BYTES, what="$SRV"))

    subs = []
    with contextlib.suppress(Exception):
        subs.append(await nc.subscribe(HEARTBEAT, cb=on_beat))
        inbox = nc.new_inbox()
        subs.append(await nc.subscribe(inbox, cb=on_srv))
        await nc.publish(PING)
        await nc.publish("$SRV.STATS", b"", reply=inbox)
    try:
        js = nc.jetstream()
        v = nc.connected_server_version
        seen.server_version = f"{v.major}.{v.minor}.{v.patch}"
        t = listen_s
        (
            seen.account,
            seen.stream,
            seen.dlq,
            seen.consumer,
            seen.store,
            seen.budget,
            seen.scheduler,
        ) = await asyncio.gather(
            _guard(errors, "jetstream", _account(nc, t)),
            _guard(errors, "stream", _stream(nc, STREAM, t, seen)),
            _guard(errors, "dlq", js.stream_info(DLQ_STREAM)),
            _guard(errors, "consumer", js.consumer_info(STREAM, STORE_DURABLE, timeout=t)),
            _guard(errors, "store", _request(nc, STORE_STATS, _stats, t)),
            _guard(errors, "budget", _request(nc, SNAPSHOT, _budget, t)),
            _guard(errors, "scheduler", _request(nc, SCHEDULER_STATS, _scheduler, t)),
        )
        await asyncio.sleep(listen_s)  # heartbeats and $SRV answers arrive meanwhile
    finally:
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    for (service, _), beat in sorted(beats.items()):
        seen.heartbeats.setdefault(service, []).append(beat)
    for reply in srv:
        name = str(reply.get("name", ""))
        seen.srv.setdefault(name.removeprefix(SRV_PREFIX), []).append(reply)
    return seen
