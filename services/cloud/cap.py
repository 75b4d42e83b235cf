"""The daily cap: how much may still be held, and the worst case of each spend.

Pure functions of the ledger (services/cloud/ledger.py), the settings and a
time given by the caller; the cloud service's one writer calls them, so two
reservations are never decided on the same "left". The promise: for every UTC
day, spent + still reserved <= ``daily_cost_limit``, checked *before* money is
committed:

- a spawn holds ``max_price_per_hour`` x ``reserve_window_s`` (the pod's price
  is not known before the provider answers; a pod priced higher is terminated
  at once);
- every check tops a running pod up to another window ahead of what it has
  spent; a top-up the cap refuses terminates the pod at that check, within the
  window it still holds;
- a serverless call holds ``serverless_price_per_s`` x its ``max_s`` (the job's
  ``timeout_s``, else ``serverless_max_s``), whole seconds rounded up, and the
  unused part is released when it is settled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schemas.cloud_settings import CloudSettings
from services.cloud.ledger import Ledger, Pod, call_cost_u, pod_cost_u, usd


@dataclass(frozen=True)
class Verdict:
    """``ok``: ``amount`` µUSD may be held; else ``reason`` says why not, with numbers."""

    ok: bool
    amount: int
    left: int
    reason: str = ""


def cap_u(settings: CloudSettings) -> int:
    return round(settings.daily_cost_limit * 1_000_000)


def left_u(state: Ledger, settings: CloudSettings, day: str) -> int:
    """What the day's cap still allows: cap - spent - reserved (never below 0)."""
    return max(0, cap_u(settings) - state.spent(day) - state.reserved(day))


def check(state: Ledger, settings: CloudSettings, day: str, amount: int, what: str) -> Verdict:
    left = left_u(state, settings, day)
    if amount <= left:
        return Verdict(True, amount, left)
    reason = (f"cost_cap: {what} needs ${usd(amount):.6f} but only ${usd(left):.6f} of the "
              f"${settings.daily_cost_limit:g} cap of {day} is left (spent "
              f"${usd(state.spent(day)):.6f}, reserved ${usd(state.reserved(day)):.6f})"
    )  # fmt: skip
    return Verdict(False, amount, left, reason)


def spawn_amount(settings: CloudSettings) -> int:
    """A spawn's worst case: a window at the highest price a pod may have."""
    return pod_cost_u(settings.max_price_per_hour, math.ceil(settings.reserve_window_s))


def top_up_amount(pod: Pod, held: int, settings: CloudSettings, now: float) -> int:
    """What a running pod must add so that it holds a window ahead of ``now``:
    the cost up to ``now + reserve_window_s`` minus what it spent and ``held``."""
    ahead = math.ceil(max(0.0, now - pod.spawned_ts) + settings.reserve_window_s)
    return max(0, pod_cost_u(pod.cost_per_hour, ahead) - pod.cost_u - held)


def call_amount(settings: CloudSettings, max_s: float | None) -> int:
    seconds = math.ceil(max_s if max_s is not None else settings.serverless_max_s)
    return call_cost_u(settings.serverless_price_per_s, seconds)
