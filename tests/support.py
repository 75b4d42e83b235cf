"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from schemas import Event
from schemas.advisor import JobAdvised
from schemas.jobs import JobSpec, JobStarted, JobSubmitted, JobSucceeded
from services.runtime.bus import Bus

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a subprocess that needs a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    """Whether the gateway at ``url`` answers /health with ok: true."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as r:
            return bool(json.load(r)["ok"])
    except (OSError, ValueError):
        return False


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll an async or sync predicate until truthy; returns its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def gpuroute(*args: str, **kwargs) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    """Start the installed ``gpuroute`` command as a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(BIN / "gpuroute"), *args], env=env, **kwargs)


def lifecycle(bus: Bus, job_id: str) -> list[Event]:
    """submitted -> advised -> started -> succeeded, causally linked."""
    submitted = bus.event(JobSubmitted(spec=JobSpec(width=1024, height=1024)), key=job_id)
    advised = bus.event(
        JobAdvised(target="local", rule="local_gpu", reason="fits"), key=job_id, causation=submitted
    )
    started = bus.event(JobStarted(target="local"), key=job_id, causation=advised)
    done = bus.event(JobSucceeded(artifacts=["out.png"]), key=job_id, causation=started)
    return [submitted, advised, started, done]
