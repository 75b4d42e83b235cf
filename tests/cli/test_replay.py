"""Replay: rebuild the job table from a log produced by a real run."""

from __future__ import annotations

import json
import subprocess

from schemas.jobs import JobFailed
from services.runtime.projection import Projector
from services.scheduler.table import JobTableProjection
from services.store.eventlog import iter_events
from tests.support import BIN, lifecycle


def replay(*args: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    out = subprocess.run(
        [str(BIN / "gpuroute"), "replay", *args], capture_output=True, check=True, text=True
    ).stdout
    body, _, last = out.rstrip("\n").rpartition("\n")
    assert last.startswith("sha256 ")
    return json.loads(body), last.split()[1]


async def make_log(bus, stored) -> None:  # type: ignore[no-untyped-def]
    events = [e for j in range(10) for e in lifecycle(bus, f"job-{j}")]
    # job-9 fails instead of succeeding
    events[-1] = bus.event(JobFailed(error="CUDA out of memory"), key="job-9", causation=events[-2])
    await bus.publish_many(events)
    await stored.count(40)


async def test_replay_twice_gives_the_same_state_and_hash(bus, store, config, stored):
    await make_log(bus, stored)
    state1, hash1 = replay("--db", str(config.events_db))
    state2, hash2 = replay("--db", str(config.events_db), "--projection", "jobs")
    assert hash1 == hash2 and state1 == state2
    assert len(state1) == 10
    assert state1["job-3"]["state"] == "succeeded"
    assert state1["job-3"]["history"] == [
        "job.submitted", "job.advised", "job.started", "job.succeeded"
    ]  # fmt: skip
    assert state1["job-9"]["state"] == "failed"
    assert state1["job-9"]["error"] == "CUDA out of memory"


async def test_replay_until_seq_stops_there(bus, store, config, stored):
    await make_log(bus, stored)
    state, partial_hash = replay("--db", str(config.events_db), "--until-seq", "6")
    _, full_hash = replay("--db", str(config.events_db))
    assert partial_hash != full_hash
    assert state["job-0"]["state"] == "succeeded"
    assert state["job-1"]["state"] == "advised"
    assert "job-2" not in state


async def test_projector_matches_cli_and_skips_folded_positions(bus, store, config, stored):
    await make_log(bus, stored)
    _, cli_hash = replay("--db", str(config.events_db))
    projector = Projector(JobTableProjection())
    rows = list(iter_events(config.events_db))
    projector.fold_raw(rows)
    projector.fold_raw(rows)  # overlapping feed: already folded, ignored
    assert projector.position == 40
    assert projector.hash() == cli_hash


def test_replay_of_a_missing_file_is_one_line(tmp_path):
    r = subprocess.run(
        [str(BIN / "gpuroute"), "replay", "--db", str(tmp_path / "nope.db")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip() == f"gpuroute: error: no event log at {tmp_path / 'nope.db'}"
