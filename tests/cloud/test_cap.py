"""The daily cap holds under concurrency: 200 reservations fired at once against
a low cap never hold or spend more than it (checked by folding the stored
events one by one), the cap is reported once a day, settling gives the unused
part back, and a replay gives the same totals."""

from __future__ import annotations

import asyncio

from schemas.cloud import (
    RESERVE,
    SETTLE,
    ReserveAnswer,
    ReserveRequest,
    SettleAnswer,
    SettleRequest,
)
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.projection import state_hash
from tests.cloud.cloud_support import cap_violations, fold, read_through, running_cloud
from tests.support import EventWatch

CAP = {"daily_cost_limit": 0.05, "serverless_price_per_s": 0.0001, "serverless_max_s": 10.0}


async def test_200_concurrent_reserves_never_pass_the_cap(
    config: Config, store: object, bus: Bus, stored: EventWatch
) -> None:
    async with running_cloud(config, **CAP) as cloud:

        async def reserve(i: int) -> ReserveAnswer:
            req = ReserveRequest(ref=f"call-{i}", job_id=f"job-{i}")
            return await bus.call(RESERVE, req, ReserveAnswer, 10)

        answers = await asyncio.gather(*(reserve(i) for i in range(200)))
        ok = [a for a in answers if a.ok]
        assert len(ok) == 50  # $0.001 each (10 s at $0.0001/s) against $0.05
        refused = [a for a in answers if not a.ok]
        assert all(a.reason.startswith("cost_cap:") for a in refused)
        # a settled call gives back what it did not use; the freed money is reservable
        settled = await bus.call(SETTLE, SettleRequest(ref="call-0", billed_s=2.2),
                                 SettleAnswer, 10)  # fmt: skip
        assert settled.cost_usd == 0.0003  # 3 whole seconds (rounded up) at $0.0001
        assert settled.released_usd == 0.0007
        again = await bus.call(RESERVE, ReserveRequest(ref="late"), ReserveAnswer, 10)
        assert not again.ok  # past the cap today: nothing more until the next UTC day
        live = cloud.follower.projector.hash()
        n = cloud.state.n

    events = await read_through(stored, bus, n, ["cloud.>"])
    assert cap_violations(events, CAP["daily_cost_limit"]) == []
    assert sum(e.type == "cloud.cost_limit_reached" for e in events) == 1
    state = fold(events)
    assert state.spent(next(iter(state.spent_day))) == 300
    # the service's own ledger (folded as it wrote) is the replay's, byte for byte
    from services.cloud.ledger import LedgerProjection

    assert state_hash(LedgerProjection().to_builtins(state)) == live
