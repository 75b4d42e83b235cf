"""[cloud] settings: every number bounded below and above (the fuzz set check_interval_s
to 0.01), the cross-key rule named, and a logged setting that no longer validates never
stops the service."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from schemas.cloud import CloudConfigUpdated, PodsSettings
from schemas.cloud_settings import CloudSettings
from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.cloud.cloud_support import running_cloud
from tests.support import EventWatch

OUT_OF_BOUNDS: list[tuple[str, Any]] = [
    ("check_interval_s", 0.01),
    ("check_interval_s", 3601),
    ("reserve_window_s", 0.5),
    ("idle_timeout_s", 0.001),
    ("idle_timeout_s", 86_401),
    ("serverless_max_s", 0.1),
    ("pod_boot_limit_s", 1),
    ("max_price_per_hour", 0.0),
    ("max_pods", 65),
    ("daily_cost_limit", -1),
    ("daily_cost_limit", float("inf")),
    ("autoscale_threshold", -1),
    ("pod_port", 0),
    ("pods.timeout_s", 0.0),
    ("pods.stuck_after_s", 1),
    ("pods.max_attempts", 0),
    ("pods.dry_seed", -1),
    ("pods.base_url", "ftp://runpod"),
    ("pods.proxy_url", "x" * 3000),
]


@pytest.mark.parametrize(("key", "value"), OUT_OF_BOUNDS)
def test_each_setting_out_of_bounds_is_refused_naming_it(key: str, value: Any) -> None:
    section, _, name = key.rpartition(".")
    body: dict[str, Any] = {section: {name: value}} if section else {name: value}
    with pytest.raises(msgspec.ValidationError, match=rf"\$\.{key}\b"):
        msgspec.convert(body, CloudSettings)


def test_the_reservation_window_must_cover_two_checks() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"reserve_window_s.*check_interval_s"):
        msgspec.convert({"check_interval_s": 40, "reserve_window_s": 60}, CloudSettings)
    ok = msgspec.convert({"check_interval_s": 30, "reserve_window_s": 60}, CloudSettings)
    assert ok.check_interval_s == 30
    assert CloudSettings().pods == PodsSettings()  # the defaults are inside the bounds


async def test_a_logged_setting_past_the_new_bounds_falls_back_to_the_config(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    old = {**msgspec.to_builtins(config.cloud), "check_interval_s": 0.01, "max_pods": 7}
    await bus.emit(CloudConfigUpdated(settings=old, changed=["check_interval_s"], n=1),
                   key="config")  # fmt: skip
    await stored.first("cloud.config.updated")
    async with running_cloud(config) as cloud:
        assert cloud.state.settings == old
        assert cloud.settings.check_interval_s == 30.0  # running_cloud's config
        assert cloud.settings.max_pods == config.cloud.max_pods
