"""Helpers of the store tests."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec

from schemas import encode_event, make_event
from schemas.jobs import JobSucceeded
from schemas.subjects import STORE_READ, STORE_STATS
from schemas.system import StoredPage, StoreReadRequest, StoreStats, decode_page
from services.runtime.bus import Bus
from services.runtime.natsserver import find_binary


def stored_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM events ORDER BY seq")]


def dead_letters(db: Path) -> list[tuple[str, str, bytes]]:
    """(subject, reason, body) of every dead letter."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT subject, reason, body FROM dead_letters").fetchall()


async def stats(bus: Bus) -> StoreStats:
    return await bus.call(STORE_STATS, {}, StoreStats)


async def read(bus: Bus, **kw: object) -> StoredPage:
    raw = await bus.call_raw(STORE_READ, msgspec.json.encode(StoreReadRequest(**kw)))  # type: ignore[arg-type]
    return decode_page(raw)


def sized_event(bus: Bus, size: int, key: str = "job-big") -> tuple[str, bytes]:
    """(id, body) of a valid ``job.succeeded`` event of exactly ``size`` bytes
    (padded in ``source``)."""

    def build(pad: int) -> tuple[str, bytes]:
        event = make_event(
            JobSucceeded(artifacts=["out.png"]), id=bus.ids.new(), key=key, ts=1.0,
            source="p" * pad,
        )  # fmt: skip
        return event.id, encode_event(event)

    base = len(build(0)[1])
    assert size >= base, f"an event is at least {base} bytes"
    eid, body = build(size - base)
    assert len(body) == size
    return eid, body


@contextlib.contextmanager
def nats_with(conf: str, store_dir: Path) -> Iterator[str]:
    """A nats-server with JetStream and extra config lines (``max_payload``,
    which has no command-line flag); yields its URL."""
    store_dir.mkdir(parents=True, exist_ok=True)
    conf_file = store_dir / "nats.conf"
    conf_file.write_text(conf)
    proc = subprocess.Popen(
        [str(find_binary()), "-c", str(conf_file), "-a", "127.0.0.1", "-p", "-1", "-js",
         "-sd", str(store_dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    port = None
    for raw in proc.stderr:
        line = raw.decode()
        m = re.search(r"Listening for client connections on \S+:(\d+)", line)
        if m:
            port = int(m.group(1))
        if "Server is ready" in line:
            break
    assert port is not None, "nats-server did not start"
    drain = threading.Thread(target=proc.stderr.read, daemon=True)
    drain.start()
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        drain.join(2)
        proc.stderr.close()
