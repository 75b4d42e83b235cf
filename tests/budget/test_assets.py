"""Lazy assets: LRU eviction stops at the target, pressure eviction, and an
unload handler in another process."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest

from schemas import budget as b
from services.budget.client import BudgetClient
from services.runtime.errors import ServiceCallError
from tests.budget.support import budgets_on, running_budget, sample

pytestmark = pytest.mark.usefixtures("store")


async def test_eviction_is_least_recently_used_first_and_stops_at_the_target(bus, config):
    async with running_budget(config):
        client = BudgetClient(bus, owner="painter")
        for name, size in [("a", 300), ("b", 500), ("c", 200), ("d", 400), ("e", 100)]:
            await client.register(name, size, kind="lora")
        await client.touch("a")  # LRU order now: b c d e a
        answer = await bus.call(b.ASSET_EVICT, {"target_mb": 600}, b.Evicted)
        assert (answer.evicted, answer.freed_mb) == (["b", "c"], 700)
        left = [a.asset_id for a in (await bus.call(b.SNAPSHOT, {}, b.BudgetSnapshot)).assets]
        assert left == ["d", "e", "a"]
        ram = await bus.call(b.ASSET_EVICT, {"target_mb": 1, "device": "ram"}, b.Evicted)
        assert ram.evicted == []  # none on that device
        with pytest.raises(ServiceCallError) as e:
            await client.touch("b")
        assert e.value.code == 404 and "'b'" in e.value.description


async def test_vram_over_its_budget_evicts_lru_assets_until_the_target_is_freed(bus, config):
    await budgets_on(bus)
    async with running_budget(config, max_vram_mb=8000, lazy_asset_target_mb=1000) as budget:
        client = BudgetClient(bus, owner="painter")
        evicted: list[b.AssetEvicted] = []
        both = asyncio.Event()

        def unload(event: b.AssetEvicted) -> None:
            evicted.append(event)
            if len(evicted) == 2:
                both.set()

        await client.on_evict(unload)
        for name in ("old", "mid", "new"):
            await client.register(name, 700)
        await bus.emit(sample(bus, vram_used=8500, ts=budget.clock.now()), key="node")
        await asyncio.wait_for(both.wait(), 10)
    assert [(e.asset_id, e.code) for e in evicted] == [("old", "pressure"), ("mid", "pressure")]
    assert evicted[0].reason.startswith("pressure: vram holds 8500 MB, over max_vram_mb 8000")
    assert set(budget.state.shelf) == {"new"}


UNLOADER = textwrap.dedent("""
    import asyncio, sys
    from services.budget.client import BudgetClient

    async def main():
        client = await BudgetClient.connect(sys.argv[1], owner="painter")
        unloaded = asyncio.Event()

        def unload(event):
            print("unloaded", event.asset_id, event.code, flush=True)
            unloaded.set()

        await client.on_evict(unload)
        await client.register("lora-1", 512, kind="lora", device="vram")
        print("ready", flush=True)
        await asyncio.wait_for(unloaded.wait(), 20)
        await client.close()

    asyncio.run(main())
""")


async def test_an_unload_handler_in_another_process_is_called(bus, config):
    async with running_budget(config):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", UNLOADER, config.nats.url or "",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
            answer = await bus.call(b.ASSET_EVICT, {"target_mb": 100}, b.Evicted)
            assert answer.evicted == ["lora-1"]
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line == b"unloaded lora-1 requested\n"
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
