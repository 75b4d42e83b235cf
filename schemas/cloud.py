"""Cloud workers: the pod types (this part) and the cloud service's events and routes.

The pod types are what ``services.cloud.pods.PodClient`` takes and answers, whichever
client (RunPod REST v2, dry-run) is behind it. They mirror RunPod REST API v2's
``CreatePodRequest``/``Pod`` only as far as gpuroute needs; the wire shapes themselves
live in ``services/cloud/runpod_v2.py``. Units: USD per hour (``cost_per_hour``),
seconds (``*_s``).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

# --- pods ------------------------------------------------------------------------------

PodStatus = Literal["PROVISIONING", "STARTING", "RUNNING", "EXITED", "ERROR", "TERMINATED"]
"""RunPod v2 ``PodStatus``: EXITED is stopped (disk kept), TERMINATED is deleted."""
POD_STATUSES: Final[tuple[PodStatus, ...]] = (
    "PROVISIONING", "STARTING", "RUNNING", "EXITED", "ERROR", "TERMINATED",
)  # fmt: skip
FINAL_POD_STATUSES: Final[frozenset[PodStatus]] = frozenset({"TERMINATED"})
"""A pod in these states costs nothing and never changes again."""
MAX_POD_PORTS: Final = 32
MAX_POD_ENV: Final = 256
MAX_NAME_CHARS: Final = 191

PortSpec = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,5}/(http|tcp|udp)$")]
"""``"<port>/<protocol>"``, as RunPod's ``ports`` array writes them (``8188/http``)."""
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]


class PodPort(msgspec.Struct, frozen=True, kw_only=True):
    """One live port of a pod. ``url`` is where an HTTP port is reached: the proxy URL
    (``https://{pod_id}-{private}.proxy.runpod.net`` unless configured otherwise); None
    for a TCP/UDP port, which is reached at ``ip``:``public``."""

    private: int
    public: int | None = None
    protocol: str = "http"
    url: str | None = None
    ip: str | None = None


class PodSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A pod to create. ``gpu_id`` is a RunPod GPU type id (``NVIDIA GeForce RTX 4090``);
    ``cloud`` is ``SECURE`` or ``COMMUNITY``; ``env`` values may hold secrets and are
    never logged or put in an event by the pod clients."""

    name: Name
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    gpu_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    gpu_count: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    cloud: Literal["SECURE", "COMMUNITY"] = "SECURE"
    ports: Annotated[list[PortSpec], msgspec.Meta(max_length=MAX_POD_PORTS)] = msgspec.field(
        default_factory=lambda: ["8188/http"]
    )
    env: Annotated[dict[str, str], msgspec.Meta(max_length=MAX_POD_ENV)] = msgspec.field(
        default_factory=dict
    )


class PodInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a pod client knows of one pod at one moment.

    ``cost_per_hour`` is the provider's current price (0.0 once EXITED or TERMINATED, as
    RunPod reports it); ``uptime_s`` is seconds since the container started, None while
    it has no runtime; ``ports`` is empty until the pod's runtime reports them (a RUNNING
    pod with no ports is not usable yet: see ``services.cloud.pods.stuck``).
    """

    id: str
    name: str
    status: PodStatus
    cost_per_hour: float
    uptime_s: float | None
    ports: list[PodPort]
    gpu_id: str
    dry_run: bool
    gpu_count: int = 1

    def http_url(self, private: int) -> str | None:
        """The URL of the HTTP port ``private`` once the pod reports it, else None."""
        for port in self.ports:
            if port.private == private and port.url is not None:
                return port.url
        return None


PROXY_URL_TEMPLATE: Final = "https://{pod_id}-{port}.proxy.runpod.net"
"""RunPod's proxy for HTTP ports (docs: pods/configuration/expose-ports)."""
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400.0)]
Price = Annotated[float, msgspec.Meta(ge=0, le=1000.0)]


class PodsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the pod client talks to RunPod, and how dry-run pods behave.

    ``base_url`` is the v2 root (a local stand-in in tests); ``proxy_url`` is the
    template of an HTTP port's URL (``{pod_id}`` and ``{port}`` are filled in; tests
    point it at a local ComfyUI stand-in). ``dry_run`` forces simulated pods even with a
    key. ``stuck_after_s``: a pod RUNNING this long with no ports is failed (billed for
    nothing otherwise). ``dry_boot_s``/``dry_cost_per_hour``/``dry_seed``: simulated
    pods become RUNNING ``dry_boot_s`` after create (half of it PROVISIONING), at that
    price, with ids drawn from that seed.
    """

    base_url: str = "https://api.runpod.io/v2"
    proxy_url: str = PROXY_URL_TEMPLATE
    timeout_s: Seconds = 30.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    max_retry_after_s: Annotated[float, msgspec.Meta(ge=0, le=3600.0)] = 60.0
    dry_run: bool = False
    stuck_after_s: Seconds = 600.0
    dry_boot_s: Annotated[float, msgspec.Meta(ge=0, le=86_400.0)] = 60.0
    dry_cost_per_hour: Price = 0.44
    dry_seed: int = 0
