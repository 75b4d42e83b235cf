"""The ``[cloud]`` config section: pods, serverless, autoscaling and the daily cap.

:class:`CloudSettings` is the section as ``services/runtime/config.py`` loads it
(file, then ``GPUROUTE_CLOUD_<KEY>``, then the legacy variables of
:data:`LEGACY_ENV`), and the body of ``PUT /api/cloud/config``. Strict like
every config table (a typo is an error naming the key); every number is
bounded below and above (a bound says what a smaller or larger value would
break: checks that poll RunPod several times a second, a reservation window
shorter than two checks), so TOML's ``inf``/``nan`` and a fuzzer's ``0.01`` are
refused naming the key; a cross-key rule (:meth:`CloudSettings.__post_init__`)
is refused naming both keys. Units: seconds
(``*_s``), US dollars (``*_usd``, ``daily_cost_limit``). The RunPod API key is a
secret: it comes only from the secrets mechanism (``[runpod] api_key`` in the
secrets file, or ``RUNPOD_API_KEY``), never from this section. docs/cloud.md
says what each setting does.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from schemas.cloud import PodsSettings

MAX_PODS: Final = 64
MAX_DAILY_USD: Final = 100_000.0

MIN_CHECK_S: Final = 0.5
Usd = Annotated[float, msgspec.Meta(ge=0, le=MAX_DAILY_USD)]
Text = Annotated[str, msgspec.Meta(max_length=512)]


class CloudSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """[cloud]: when to rent GPUs, what, and how much may be spent per UTC day."""

    max_pods: Annotated[int, msgspec.Meta(ge=0, le=MAX_PODS)] = 2
    """Pods running at once (0: never spawn one)."""
    idle_timeout_s: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 300.0
    """A ready pod that ran no job this long is terminated."""
    autoscale_threshold: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 5
    """Jobs waiting (queued or delayed, not running) above which pods are spawned."""
    prefer_serverless: bool = True
    """One-off remote jobs go to the serverless endpoint; pods take batches."""
    daily_cost_limit: Usd = 10.0
    """The hard cap: reserved plus spent money of one UTC day never passes it."""
    docker_image: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] = (
        "runpod/worker-comfyui:5.5.0-base"
    )
    gpu_type: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "NVIDIA GeForce RTX 4090"
    serverless_endpoint_id: Text = ""
    """The RunPod serverless endpoint (also ``[adapters.runpod] endpoint_id``)."""
    serverless_price_per_s: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.00031
    """USD per billed second of a serverless worker (RunPod bills whole seconds,
    rounded up)."""
    serverless_max_s: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 600.0
    """A serverless call's worst case when the job sets no ``timeout_s``."""
    max_price_per_hour: Annotated[float, msgspec.Meta(ge=0.01, le=1000)] = 1.0
    """The most a pod may cost per hour: a spawn reserves at this price, and a
    pod the provider prices higher is terminated at once."""
    check_interval_s: Annotated[float, msgspec.Meta(ge=MIN_CHECK_S, le=3600)] = 15.0
    """How often the autoscaler looks at pods, queue and money (each check asks
    RunPod about every live pod: below 0.5 s it would poll past RunPod's rate
    limits)."""
    reserve_window_s: Annotated[float, msgspec.Meta(ge=2 * MIN_CHECK_S, le=86_400)] = 60.0
    """The time a pod's reservation covers (at least two checks: the next check
    can stop the pod before it runs past what was reserved)."""
    pod_boot_limit_s: Annotated[float, msgspec.Meta(ge=10, le=86_400)] = 900.0
    """A pod not RUNNING with its port this long after its spawn is terminated."""
    pod_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8188
    """The worker's HTTP port (ComfyUI's)."""
    terminate_on_shutdown: bool = True
    """On a clean stop, terminate the pods this instance spawned."""
    pods: PodsSettings = msgspec.field(default_factory=PodsSettings)
    """[cloud.pods]: the RunPod REST v2 client and dry-run pods (docs/cloud_pods.md):
    ``base_url``, ``dry_run``, ``stuck_after_s`` (a pod RUNNING with no ports
    this long is terminated), the dry-run boot time and price. Start-up
    settings: ``PUT /api/cloud/config`` refuses a change to them."""

    def __post_init__(self) -> None:
        if self.reserve_window_s < 2 * self.check_interval_s:
            raise ValueError(
                f"reserve_window_s ({self.reserve_window_s:g} s) must cover two checks: at "
                f"least 2 x check_interval_s ({self.check_interval_s:g} s)"
            )


LEGACY_ENV: Final[dict[str, tuple[str, float]]] = {
    "RUNPOD_SERVERLESS_ENDPOINT_ID": ("serverless_endpoint_id", 1),
    "RUNPOD_DOCKER_IMAGE": ("docker_image", 1),
    "RUNPOD_GPU_TYPE": ("gpu_type", 1),
    "CLOUD_MAX_PODS": ("max_pods", 1),
    "CLOUD_IDLE_TIMEOUT": ("idle_timeout_s", 0.001),
    "CLOUD_AUTOSCALE_THRESHOLD": ("autoscale_threshold", 1),
    "CLOUD_PREFER_SERVERLESS": ("prefer_serverless", 1),
    "CLOUD_DAILY_COST_LIMIT": ("daily_cost_limit", 1),
}
"""The variables existing deployments set: name -> (key, factor). The factor
converts the unit (``CLOUD_IDLE_TIMEOUT`` is milliseconds). ``GPUROUTE_CLOUD_*``
wins over them; ``RUNPOD_API_KEY`` is read by the secrets mechanism."""
