"""Replaying the log of a run reproduces the scheduler's live job table byte for byte."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from schemas import scheduler as s
from schemas.adapter_settings import AdaptersSettings, RunPodSettings
from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.adapters.stack import start_stack, stop_stack, write_secrets
from tests.advisor.service_support import running_advisor
from tests.cloud.cloud_support import running_cloud  # remote calls reserve money
from tests.support import EventWatch, gpuroute

from .support import Client, running_scheduler

JOBS: list[dict[str, Any]] = [
    {"payload": {"duration_s": 0, "steps": 3}},
    {"payload": {"duration_s": 0.05, "outcome": "flaky", "failure_rate": 0.7},
     "max_attempts": 4},
    {"payload": {"outcome": "failure"}},
    {"executor": "remote", "payload": {"provider": "runpod", "input": {"prompt": "fox"}}},
    {"executor": "remote", "payload": {"provider": "runpod"}, "kind": "llm", "tokens": 64},
    {"payload": {"duration_s": 0}, "idempotency_key": "same-job"},
    {"payload": {"duration_s": 0}, "idempotency_key": "same-job"},
]  # fmt: skip


def replayed_hash(db: Path) -> str:
    proc = gpuroute("replay", "--db", str(db), "--projection", "jobs",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    last = out.decode().strip().splitlines()[-1]
    assert last.startswith("sha256 "), last
    return last.split()[1]


async def test_replay_of_a_run_gives_the_live_job_table_hash(
    config: Config, store: Any, bus: Bus, tmp_path: Path, stored: EventWatch
) -> None:
    settings = AdaptersSettings(
        secrets_file=str(write_secrets(tmp_path)),
        runpod=RunPodSettings(endpoint_id="ep-1", dry_run=True),
    )
    stack = await start_stack(config, settings, bus)
    try:
        async with running_advisor(config), running_cloud(config), \
                running_scheduler(config, every_executor=True) as scheduler:  # fmt: skip
            client = Client(bus, scheduler.follower)
            ids = [(await client.submit(**body)).job_id for body in JOBS]
            held = await client.submit(payload={"duration_s": 60})
            mine = lambda e: e.key == held.job_id  # noqa: E731
            await stored.folded(scheduler.follower, "job.started", where=mine)
            assert scheduler.table[held.job_id].state == "running"
            await client.cancel(held.job_id)
            ends = {v.state for v in await asyncio.gather(*(client.ended(i) for i in ids))}
            assert ends == {"succeeded", "failed"}, ends
            table = scheduler.table
            assert table[ids[3]].dry_run and table[ids[3]].state == "succeeded"
            await client.ended(held.job_id)
            assert table[held.job_id].state in s.TERMINAL
            live = scheduler.follower.projector.hash()
    finally:
        await stop_stack(stack)
    assert replayed_hash(config.events_db) == live
