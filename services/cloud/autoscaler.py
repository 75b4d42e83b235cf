"""Autoscaling decisions: a pure function of the ledger, the settings and a time.

:func:`plan` says what one check should do; the cloud service records each
decision as a ``cloud.autoscaled`` event (its code, sentence and numbers) and
then carries it out. No clock is read here: ``now`` is the caller's.

- **spawn** (code ``queue_depth``): ``features.enable_compute`` on, more jobs
  waiting than ``autoscale_threshold``, fewer live pods (booting included) than
  ``max_pods``: one pod per waiting job over the threshold, up to ``max_pods``;
- **terminate** ``idle``: a ready pod that ran nothing for ``idle_timeout_s``;
- **terminate** ``boot``: a pod not ready ``pod_boot_limit_s`` after its spawn.

The stuck-runtime rule needs what the provider says of the pod now, so the
service applies it while it watches the pods (``services.cloud.pods.stuck``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.cloud_settings import CloudSettings
from services.cloud.ledger import Ledger


@dataclass(frozen=True)
class Decision:
    action: Literal["spawn", "terminate"]
    code: str
    reason: str
    queue: int
    pods: int
    pod_id: str | None = None


def plan(state: Ledger, settings: CloudSettings, now: float) -> list[Decision]:
    """This check's decisions: terminations first, then spawns."""
    live = state.live_pods()
    queue = len(state.waiting)
    out: list[Decision] = []
    for pod in live:
        if pod.ready_ts is None and now - pod.spawned_ts > settings.pod_boot_limit_s:
            out.append(Decision("terminate", "boot", (
                f"pod {pod.pod_id} not ready {now - pod.spawned_ts:.1f}s after its spawn "
                f"(pod_boot_limit_s {settings.pod_boot_limit_s:g})"), queue, len(live),
                pod.pod_id))  # fmt: skip
        elif pod.busy is None and pod.idle_since is not None:
            idle = now - pod.idle_since
            if idle >= settings.idle_timeout_s:
                out.append(Decision("terminate", "idle", (
                    f"pod {pod.pod_id} idle {idle:.1f}s (idle_timeout_s "
                    f"{settings.idle_timeout_s:g})"), queue, len(live), pod.pod_id))  # fmt: skip
    staying = len(live) - len(out)
    if not state.compute or queue <= settings.autoscale_threshold:
        return out
    want = min(settings.max_pods - staying, queue - settings.autoscale_threshold)
    for i in range(max(0, want)):
        out.append(Decision("spawn", "queue_depth", (
            f"{queue} jobs waiting > autoscale_threshold {settings.autoscale_threshold}; "
            f"pods {staying + i} of max_pods {settings.max_pods}"),
            queue, staying + i))  # fmt: skip
    return out
