"""Fixtures of the store tests: a store that checks its consumer often."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.runtime.bus import Bus
from services.runtime.config import Config
from services.store.service import StoreService


@pytest.fixture
async def fast_store(config: Config) -> AsyncIterator[StoreService]:
    """The store service, checking its stream and consumer every 0.1 s."""
    b = await Bus.connect(config.nats.url or "", source="store")
    service = StoreService(b, config)
    service.check_s = 0.1
    await service.start()
    yield service
    await service.stop()
    await b.close()
