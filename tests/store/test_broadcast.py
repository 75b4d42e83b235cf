"""The ``stored.*`` broadcast, written as protocol frames per batch, is the
same messages one ``publish`` per event would send."""

from __future__ import annotations

import asyncio
import re

from nats.aio.msg import Msg

from schemas import encode_event
from schemas.system import decode_stored, encode_stored
from services.store.broadcast import CHUNK_BYTES, frames
from tests.support import lifecycle

_FRAME = re.compile(rb"PUB (\S+) (\d+)\r\n")


def _parse(chunk: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 0
    while i < len(chunk):
        m = _FRAME.match(chunk, i)
        assert m is not None, chunk[i : i + 80]
        size = int(m.group(2))
        start = m.end()
        assert chunk[start + size : start + size + 2] == b"\r\n"
        out.append((m.group(1), chunk[start : start + size]))
        i = start + size + 2
    return out


def test_frames_are_one_pub_per_event_in_bounded_chunks():
    stored = [(n + 1, "job.submitted" if n % 3 else "job.advised", b'{"n":%d}' % n + b" " * 500)
              for n in range(3_000)]  # fmt: skip
    stored.insert(7, (99_999, "job.started", b"x" * 2_000))  # over the max_payload below
    chunks, too_big = frames(stored, max_payload=1_024)
    assert too_big == 1
    assert len(chunks) > 1 and all(len(c) < CHUNK_BYTES + 1_100 for c in chunks)
    sent = [frame for chunk in chunks for frame in _parse(chunk)]
    expected = [(b"stored." + t.encode(), encode_stored(s, b)) for s, t, b in stored if s != 99_999]
    assert sent == expected


async def test_every_stored_event_is_broadcast_once_in_order(bus, store):
    got: list[Msg] = []
    events = [e for j in range(500) for e in lifecycle(bus, f"job-b{j}")]
    all_in = asyncio.Event()

    async def on_stored(msg: Msg) -> None:
        got.append(msg)
        if len(got) >= len(events):
            all_in.set()

    sub = await bus.nc.subscribe("stored.>", cb=on_stored)
    await bus.publish_many(events)
    await asyncio.wait_for(all_in.wait(), 10)
    await bus.nc.flush()
    await sub.unsubscribe()
    assert len(got) == len(events)
    decoded = [decode_stored(m.data) for m in got]
    assert [d.seq for d in decoded] == list(range(1, len(events) + 1))
    assert [m.subject for m in got] == [f"stored.{e.type}" for e in events]
    assert [bytes(d.event) for d in decoded] == [encode_event(e) for e in events]
