"""Shared fixtures: a real nats-server per test (random port, its own store
dir), a Bus, and the store service running in-process against them."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.runtime.bus import Bus
from services.runtime.config import Config, load_config
from services.runtime.errors import NatsServerError
from services.runtime.natsserver import EmbeddedNats, find_binary
from tests.support import EventWatch, watch_stored

SHM_MIN_FREE = 4 << 30


def pytest_configure(config: pytest.Config) -> None:
    """Temporary folders on tmpfs (``/dev/shm``) where there is one, unless
    ``PYTEST_DEBUG_TEMPROOT`` says otherwise: every test's nats-server runs
    with ``sync: always`` and its SQLite store commits in WAL, so on a disk each
    JetStream write waited ~1 ms for an fsync (3-4x the time of 500 sequential
    publishes). Nothing here tests an OS crash, the one thing fsync guards
    against; a SIGKILLed process leaves its writes in the page cache either way.
    A small tmpfs (a container's 64 MiB default) is left alone: a run keeps
    its folders until it ends, and doctor's tests expect ``min_free_mb`` free.
    The folders are read lazily, so this runs before any test asks for one."""
    shm = Path("/dev/shm")
    if "PYTEST_DEBUG_TEMPROOT" in os.environ or not os.access(shm, os.W_OK):
        return
    if shutil.disk_usage(shm).free >= SHM_MIN_FREE:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(shm)


@pytest.fixture(scope="session", autouse=True)
def _nats_binary() -> Path:
    try:
        return find_binary()
    except NatsServerError as e:
        pytest.exit(f"cannot run the tests: {e}", returncode=3)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def config(tmp_path: Path, nats_server: EmbeddedNats) -> Config:
    return load_config(
        data_dir=str(tmp_path / "data"),
        nats__url=nats_server.url,
        http__port=0,
        heartbeat_s=0.2,
    )


@pytest.fixture
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[Bus]:
    b = await Bus.connect(nats_server.url, source="test")
    await b.ensure_streams()
    yield b
    await b.close()


@pytest.fixture
async def store(config: Config) -> AsyncIterator[object]:
    from services.store.service import StoreService

    b = await Bus.connect(config.nats.url or "", source="store")
    service = StoreService(b, config)
    await service.start()
    yield service
    await service.stop()
    await b.close()


@pytest.fixture
async def stored(bus: Bus) -> AsyncIterator[EventWatch]:
    """Every event the store commits from the test's start (``tests.support``):
    ``await stored.first("job.advised", where=...)``, ``await stored.count(40)``."""
    async with watch_stored(bus) as events:
        yield events
