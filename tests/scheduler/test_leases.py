"""A runner that dies leaves a lease that expires: another instance retries or fails the job."""

from __future__ import annotations

from typing import Any

from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.advisor.service_support import running_advisor
from tests.support import EventWatch, poll

from .support import Client, Quick, running_scheduler


async def test_a_silent_owner_is_taken_over_and_never_left_running(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    held = Quick()
    async with running_advisor(config):
        async with running_scheduler(config, held, lease_s=1.0) as a:
            client = Client(bus)
            retried = await client.submit(payload={"hold": True}, max_attempts=2)
            spent = await client.submit(payload={"hold": True}, max_attempts=1)
            await poll(lambda: len(held.runs) == 2)  # the executor's own list: no event says it ran
            await a.bus.nc.close()  # dies: no terminal event, no lease renewal
        async with running_scheduler(config, Quick(), lease_s=1.0) as b:
            client.folds = (b.follower,)
            again = lambda e: e.key == retried.job_id and e.payload.attempt == 2  # noqa: E731
            await stored.folded(b.follower, "job.started", where=again, timeout=20)
            view = await client.get(retried.job_id)
            assert view.state == "running" and view.attempts == 2 and view.owner != a.instance
            assert "job.retried" in (await client.get(retried.job_id)).history
            gone = await client.ended(spent.job_id, timeout=20)
            assert gone.state == "failed" and gone.error_code == "lease_expired", gone
            assert "lease expired" in (gone.error or "")
