"""What-if price overrides are checked against every provider the log ever had."""

from __future__ import annotations

import pytest

from schemas import encode_event, make_event
from schemas.providers import (
    GpuOffer,
    PriceSnapshot,
    ProviderProfile,
    ProviderRemoved,
    ProviderUpserted,
)
from services.advisor.config import parse_config
from services.advisor.errors import UnknownOverride
from services.advisor.replay import what_if_log

SNAP = PriceSnapshot(date="2026-11-01", source="test")


def _rows() -> list[tuple[int, str, bytes]]:
    profile = ProviderProfile(
        id="gone",
        kind="modal",
        gpus=(GpuOffer(gpu="L4", vram_gb=24, price_usd=0.8),),
        price_snapshot=SNAP,
    )
    events = [ProviderUpserted(profile=profile), ProviderRemoved(id="gone")]
    rows = []
    for seq, data in enumerate(events, 1):
        event = make_event(data, id=f"e{seq}", key="gone", ts=1.0, source="t")
        rows.append((seq, event.type, encode_event(event)))
    return rows


def test_a_provider_removed_later_may_be_overridden() -> None:
    config = parse_config('[[price_overrides]]\nprovider = "gone"\ngpu = "L4"\nmultiplier = 2.0')
    report, recorded = what_if_log(_rows(), config, "f.toml")
    assert report.total == 0 and recorded.providers_seen == {"gone": {"L4"}}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            'provider = "nope"\nmultiplier = 2.0',
            "f.toml: [[price_overrides]] #1 (at `$.price_overrides[0]`) names provider 'nope',"
            " which this log never registered (providers in the log: gone)",
        ),
        (
            'provider = "gone"\ngpu = "H100"\nprice_usd = 1.0',
            "f.toml: [[price_overrides]] #1 (at `$.price_overrides[0]`) names GPU 'H100',"
            " which provider 'gone' never offered in this log (its GPUs: L4)",
        ),
    ],
)
def test_an_override_naming_what_the_log_never_had_is_an_error(toml: str, message: str) -> None:
    config = parse_config("[[price_overrides]]\n" + toml)
    with pytest.raises(UnknownOverride) as e:
        what_if_log(_rows(), config, "f.toml")
    assert str(e.value) == message
