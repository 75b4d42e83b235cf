"""How fast events.db and the JetStream stream grow: ``growth.*`` checks of doctor.

The rate is bytes over the time between the first and the last event each
holds (the store's ``ts`` column; the stream's ``first_ts``/``last_ts``), so one
look is enough and nothing has to be sampled twice. A log younger than
``MIN_SPAN_S`` cannot tell a rate and passes saying so. The evidence gives the
days until the disk under each fills at that rate. JetStream's growth levels
off at ``[nats] stream_max_age_s``; events.db keeps every event forever.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from services.ops.files import MiB, file_size
from services.ops.report import Check, passed, warned

DAY_S = 86_400.0
MIN_SPAN_S = 3_600.0
Span = tuple[float, float]
"""(first, last) event times, epoch seconds."""


def event_log_span(db: Path) -> Span | None:
    """First and last event time of events.db, read-only (None: absent, empty, unreadable)."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT (SELECT ts FROM events ORDER BY seq LIMIT 1),"
                " (SELECT ts FROM events ORDER BY seq DESC LIMIT 1)"
            ).fetchone()
    except sqlite3.Error:
        return None  # store.file says what is wrong with it
    return (float(row[0]), float(row[1])) if row and row[0] is not None else None


def growth(
    label: str, what: str, size: int, span: Span | None, warn_mib_per_day: float, folder: Path,
) -> Check:  # fmt: skip
    """One ``growth.*`` check: ``size`` bytes accumulated over ``span``."""
    name = f"growth.{label}"
    if span is None or span[1] - span[0] < MIN_SPAN_S:
        return passed(
            name,
            f"{what}: {size // MiB} MiB, too young to tell a rate "
            f"(less than {MIN_SPAN_S / 3600:g} h between its first and last event)",
        )
    days = (span[1] - span[0]) / DAY_S
    per_day = size / days / MiB
    text = f"{what}: {size // MiB} MiB over {days:.1f} days, {per_day:.1f} MiB/day"
    evidence = [f"threshold [ops] growth_warn_mb_per_day = {warn_mib_per_day:g}"]
    try:
        free = shutil.disk_usage(folder).free / MiB
        if per_day > 0:
            evidence.append(f"{free:.0f} MiB free under {folder}: full in "
                            f"{free / per_day:.0f} days at this rate")  # fmt: skip
    except OSError as e:
        evidence.append(f"free under {folder}: {e.strerror}")
    if per_day > warn_mib_per_day:
        return warned(name, text + f" (over {warn_mib_per_day:g})",
                      "find what publishes most (gpuroute tail '>' | cut -c1-80 | sort | "
                      "uniq -c); lower [nats] stream_max_age_s for JetStream, move the data "
                      "directory to a larger disk, or raise [ops] growth_warn_mb_per_day",
                      evidence)  # fmt: skip
    return passed(name, text, evidence)


async def growth_checks(
    db: Path, stream_bytes: int | None, stream_span: Span | None, warn_mib_per_day: float,
    jetstream_dir: Path,
) -> list[Check]:  # fmt: skip
    """``growth.events_db`` always; ``growth.jetstream`` when the stream answered."""
    span = await asyncio.to_thread(event_log_span, db)
    out = [growth("events_db", str(db), file_size(db), span, warn_mib_per_day, db.parent)]
    if stream_bytes is not None:
        out.append(growth("jetstream", "event stream", stream_bytes, stream_span,
                          warn_mib_per_day, jetstream_dir))  # fmt: skip
    return out
