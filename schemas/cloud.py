"""Cloud workers: the pod types (this part) and the cloud service's events and routes.

The pod types are what ``services.cloud.pods.PodClient`` takes and answers, whichever
client (RunPod REST v2, dry-run) is behind it. They mirror RunPod REST API v2's
``CreatePodRequest``/``Pod`` only as far as gpuroute needs; the wire shapes themselves
live in ``services/cloud/runpod_v2.py``. Units: USD per hour (``cost_per_hour``),
seconds (``*_s``).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from schemas.envelope import event_type
from schemas.limits import MAX_NAME
from schemas.subjects import command

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


CLAIM_LEASE_S: Final = 15.0
"""A pod claim's lease when the scheduler names none (its ``lease_s`` default)."""
PROXY_URL_TEMPLATE: Final = "https://{pod_id}-{port}.proxy.runpod.net"
"""RunPod's proxy for HTTP ports (docs: pods/configuration/expose-ports)."""
Price = Annotated[float, msgspec.Meta(ge=0, le=1000.0)]
HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s]+$", max_length=2048)]


class PodsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the pod client talks to RunPod, and how dry-run pods behave.

    ``base_url`` is the v2 root (a local stand-in in tests); ``proxy_url`` is the
    template of an HTTP port's URL (``{pod_id}`` and ``{port}`` are filled in; tests
    point it at a local ComfyUI stand-in). ``dry_run`` forces simulated pods even with a
    key. ``stuck_after_s``: a pod RUNNING this long with no ports is failed (billed for
    nothing otherwise). ``dry_boot_s``/``dry_cost_per_hour``/``dry_seed``: simulated
    pods become RUNNING ``dry_boot_s`` after create (half of it PROVISIONING), at that
    price per GPU, with ids drawn from that seed.

    Every number is bounded (a request timeout of at least 0.1 s, a pod stuck for at
    least 10 s: RunPod needs that long to report a port) and each URL is an
    ``http(s)://`` address of at most 2048 characters.
    """

    base_url: HttpUrl = "https://api.runpod.io/v2"
    proxy_url: HttpUrl = PROXY_URL_TEMPLATE
    timeout_s: Annotated[float, msgspec.Meta(ge=0.1, le=600.0)] = 30.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    max_retry_after_s: Annotated[float, msgspec.Meta(ge=0, le=3600.0)] = 60.0
    dry_run: bool = False
    stuck_after_s: Annotated[float, msgspec.Meta(ge=10.0, le=86_400.0)] = 600.0
    dry_boot_s: Annotated[float, msgspec.Meta(ge=0, le=86_400.0)] = 60.0
    dry_cost_per_hour: Price = 0.44
    dry_seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0


# -- the cloud service (c2): events, requests, answers ------------------------------
#
# Money on the wire is USD (floats rounded to the micro-dollar); the ledger
# (services/cloud/ledger.py) sums it as integer micro-dollars so a replay adds up
# to the same totals. ``n`` is the cloud service's change number (one writer):
# the service folds its own events as it writes them and skips them when they
# come back from the store. Every event and answer says ``dry_run``.

Usd = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Day = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
"""A UTC day, ``YYYY-MM-DD``."""
Provider = Literal["runpod-pod", "runpod-serverless"]
TerminateCode = Literal[
    "idle", "cost_cap", "stuck", "boot", "shutdown", "request", "shutdown_all", "price",
    "gone", "error",
]  # fmt: skip


class CloudPodSpawned(msgspec.Struct, frozen=True, kw_only=True):
    """A pod was created at the provider (billing starts at this event's ``ts``);
    ``reservation``: the ref its reservation was made under (now the pod's)."""

    pod_id: Ref
    name: str
    gpu_type: str
    cost_per_hour: Usd
    reservation: str
    reason: str = ""
    instance: str | None = None
    dry_run: bool = False
    n: int = 0


class CloudPodReady(msgspec.Struct, frozen=True, kw_only=True):
    """The pod is RUNNING with its worker port: a target at ``url``."""

    pod_id: Ref
    url: str
    port: int
    dry_run: bool = False
    n: int = 0


class CloudPodTerminated(msgspec.Struct, frozen=True, kw_only=True):
    """The pod is gone; ``billed_s`` (whole seconds from its spawn to this event)
    and ``cost_usd`` (its whole cost) are what the ledger also computes."""

    pod_id: Ref
    code: TerminateCode
    reason: str
    billed_s: int = 0
    cost_usd: Usd = 0.0
    dry_run: bool = False
    n: int = 0


class CloudCostUpdated(msgspec.Struct, frozen=True, kw_only=True):
    """Money spent: a pod's cost up to this event (``ref`` its id) or one
    serverless call (``ref`` the call's reservation, ``job_id``). ``cost_usd``:
    the ref's cost so far; ``billed_s``: its billed seconds (RunPod: whole seconds,
    rounded up)."""

    ref: Ref
    provider: Provider
    billed_s: int
    cost_usd: Usd
    price: Usd
    """USD per hour for a pod, per second for a serverless call."""
    job_id: str | None = None
    dry_run: bool = False
    n: int = 0


class CloudCostReserved(msgspec.Struct, frozen=True, kw_only=True):
    """``amount_usd`` of today's cap held for ``ref`` (a spawn, a pod's next
    window, a serverless call): its worst case until the next check can stop it.
    ``spent_usd``/``reserved_usd``: the day's totals after it; ``cap_usd``: the
    cap it was checked against."""

    ref: Ref
    kind: Literal["pod", "serverless"]
    amount_usd: Usd
    day: Day
    cap_usd: Usd
    spent_usd: Usd
    reserved_usd: Usd
    price: Usd = 0.0
    job_id: str | None = None
    dry_run: bool = False
    n: int = 0


class CloudCostReleased(msgspec.Struct, frozen=True, kw_only=True):
    """What ``ref`` still held is given back (it ended, or was never spent)."""

    ref: Ref
    released_usd: Usd
    reason: str = ""
    dry_run: bool = False
    n: int = 0


class CloudCostLimitReached(msgspec.Struct, frozen=True, kw_only=True):
    """The day's cap refused money (once per UTC day): no spawn, no remote
    submit, running pods terminated, jobs stay local until the next day."""

    day: Day
    cap_usd: Usd
    spent_usd: Usd
    reserved_usd: Usd
    refused_usd: Usd
    reason: str
    dry_run: bool = False
    n: int = 0


class CloudAutoscaled(msgspec.Struct, frozen=True, kw_only=True):
    """One autoscaling decision with the numbers it used: ``action`` spawn or
    terminate, ``code`` (``queue_depth``, ``idle``, ``stuck``, ``boot``,
    ``cost_cap``, ``shutdown``, ...), the sentence, the queue and pod counts."""

    action: Literal["spawn", "terminate"]
    code: str
    reason: str
    queue: int = 0
    threshold: int = 0
    pods: int = 0
    max_pods: int = 0
    pod_id: str | None = None
    dry_run: bool = False
    n: int = 0


class CloudConfigUpdated(msgspec.Struct, frozen=True, kw_only=True):
    """``PUT /api/cloud/config``: the whole ``[cloud]`` section after the change
    (a dict, read as ``CloudSettings``), and the keys that changed."""

    settings: dict[str, Any]
    changed: list[str] = []
    n: int = 0
    dry_run: bool = False


class CloudPodClaimed(msgspec.Struct, frozen=True, kw_only=True):
    """A scheduler's attempt (``job_id``) has the pod to itself until it is
    released: the cloud service's writer grants a claim only on an idle ready
    pod, so no pod runs two jobs at once, whichever scheduler asks.

    The claim is leased: it holds while ``instance`` renews its scheduler lease
    (``job.lease.renewed``), and at least ``lease_s`` seconds from this event;
    after both the cloud service releases the pod (``cloud.pod.released``)."""

    pod_id: Ref
    job_id: str
    instance: str | None = None
    dry_run: bool = False
    n: int = 0
    lease_s: float = CLAIM_LEASE_S


class CloudPodReleased(msgspec.Struct, frozen=True, kw_only=True):
    """The attempt on the pod ended, or its claim's lease expired (``reason``
    says so, with the instance and the seconds): the pod is idle from this event."""

    pod_id: Ref
    job_id: str
    dry_run: bool = False
    n: int = 0
    reason: str = ""


_C = {"publishers": ("cloud",), "readers": ("cloud",)}
_CS = {"publishers": ("cloud",), "readers": ("cloud", "scheduler")}
CloudPodSpawnedEvent = event_type(
    "cloud.pod.spawned", CloudPodSpawned, "A cloud pod was created (billing starts).", **_CS
)
CloudPodReadyEvent = event_type(
    "cloud.pod.ready", CloudPodReady, "A cloud pod is running with its worker port.", **_CS
)
CloudPodTerminatedEvent = event_type(
    "cloud.pod.terminated", CloudPodTerminated, "A cloud pod is gone, with its cost.", **_CS
)
CloudCostUpdatedEvent = event_type(
    "cloud.cost.updated", CloudCostUpdated, "Cloud money spent (a pod, a serverless call).", **_C
)
CloudCostReservedEvent = event_type(
    "cloud.cost.reserved", CloudCostReserved, "Cloud money held against the day's cap.", **_C
)
CloudCostReleasedEvent = event_type(
    "cloud.cost.released", CloudCostReleased, "Held cloud money given back.", **_C
)
CloudCostLimitReachedEvent = event_type(
    "cloud.cost_limit_reached", CloudCostLimitReached,
    "The day's cloud cost cap refused money (once per day).", **_CS,
)  # fmt: skip
CloudAutoscaledEvent = event_type(
    "cloud.autoscaled", CloudAutoscaled, "An autoscaling decision with its numbers.", **_C
)
CloudConfigUpdatedEvent = event_type(
    "cloud.config.updated", CloudConfigUpdated, "The [cloud] settings were changed.", **_CS
)
CloudPodClaimedEvent = event_type(
    "cloud.pod.claimed", CloudPodClaimed, "An attempt has a pod to itself.", **_CS
)
CloudPodReleasedEvent = event_type(
    "cloud.pod.released", CloudPodReleased, "An attempt left its pod (idle now).", **_CS
)


# -- requests and answers ----------------------------------------------------------


class ReserveRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A remote (serverless) submit asks to hold its worst case: ``max_s``
    billed seconds at the serverless price (default ``serverless_max_s``)."""

    ref: Ref
    job_id: str | None = None
    max_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] | None = None


class ReserveAnswer(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    ref: str
    amount_usd: float = 0.0
    left_usd: float = 0.0
    reason: str = ""
    dry_run: bool = False


class SettleRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A reserved call ended: ``billed_s`` seconds were used (0: never ran)."""

    ref: Ref
    billed_s: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 0.0
    job_id: str | None = None
    dry_run: bool = False


class SettleAnswer(msgspec.Struct, frozen=True, kw_only=True):
    ref: str
    cost_usd: float
    released_usd: float
    dry_run: bool = False


class NoBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A request without fields."""


class SpawnRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /api/cloud/spawn``: one pod now (``gpuType``: the setting's default)."""

    gpuType: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class PodRef(msgspec.Struct, frozen=True, kw_only=True):
    podId: Ref


class PodView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str
    busy: bool
    jobsProcessed: int
    costPerHour: float
    uptime: float
    """Seconds since its spawn (to its end when it is gone)."""
    idleTime: float
    """Seconds since it last ran a job (or became ready); 0 while busy."""
    cost: float = 0.0
    url: str | None = None
    gpuType: str = ""
    dry_run: bool = False


class CloudStatus(msgspec.Struct, frozen=True, kw_only=True):
    available: bool
    activePods: int
    busyPods: int
    totalJobsProcessed: int
    totalCost: float
    pods: list[PodView]
    config: dict[str, Any]
    dry_run: bool = False
    reason: str = ""
    jobsEnded: int = 0
    """Jobs ended anywhere (local too): ``totalJobsProcessed`` of them ran in the cloud."""


class CloudCost(msgspec.Struct, frozen=True, kw_only=True):
    totalCost: float
    costByPod: dict[str, float]
    activePods: int
    totalJobsProcessed: int
    avgCostPerJob: float
    today: str
    todaySpent: float
    todayReserved: float
    dailyCap: float
    costByDay: dict[str, float] = {}
    costByProvider: dict[str, float] = {}
    limitReached: bool = False
    dry_run: bool = False


class PodList(msgspec.Struct, frozen=True, kw_only=True):
    pods: list[PodView]
    dry_run: bool = False


class SpawnAnswer(msgspec.Struct, frozen=True, kw_only=True):
    pod: PodView
    dry_run: bool = False


class ShutdownAnswer(msgspec.Struct, frozen=True, kw_only=True):
    terminated: list[str]
    dry_run: bool = False


class ConfigAnswer(msgspec.Struct, frozen=True, kw_only=True):
    config: dict[str, Any]
    changed: list[str]
    dry_run: bool = False


class ClaimRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A scheduler asks for an idle ready pod for one attempt of ``job_id``;
    ``lease_s``: the scheduler's lease (``[scheduler] lease_s``), the least time
    the claim holds without a ``job.lease.renewed`` of ``instance``."""

    job_id: Ref
    instance: str | None = None
    lease_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = CLAIM_LEASE_S


class ClaimAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``ok``: the pod is the attempt's until released; else ``reason`` says why not."""

    ok: bool
    pod_id: str | None = None
    url: str | None = None
    reason: str = ""
    dry_run: bool = False


class ReleaseRequest(msgspec.Struct, frozen=True, kw_only=True):
    pod_id: Ref
    job_id: Ref


class ReleaseAnswer(msgspec.Struct, frozen=True, kw_only=True):
    released: bool
    """False when the pod was not this job's any more (ended, or already released)."""
    dry_run: bool = False


_P = "gpuroute.cloud."
RESERVE = command(
    _P + "reserve",
    "hold a serverless call's worst case against the day's cap.",
    clients=("scheduler",),
    request=ReserveRequest,
    reply=ReserveAnswer,
)
SETTLE = command(
    _P + "settle",
    "a reserved call ended: its cost, the rest released.",
    clients=("scheduler",),
    request=SettleRequest,
    reply=SettleAnswer,
)
STATUS = command(
    _P + "status",
    "pods, jobs, cost, config.",
    clients=("gateway",),
    request=NoBody,
    reply=CloudStatus,
)
COST = command(
    _P + "cost",
    "costs per pod, day, provider; today's cap.",
    clients=("gateway",),
    request=NoBody,
    reply=CloudCost,
)
CLAIM = command(
    _P + "claim",
    "an idle ready pod for one attempt (the least used), or why none.",
    clients=("scheduler",),
    request=ClaimRequest,
    reply=ClaimAnswer,
)
RELEASE = command(
    _P + "release",
    "an attempt left its pod.",
    clients=("scheduler",),
    request=ReleaseRequest,
    reply=ReleaseAnswer,
)
PODS = command(_P + "pods", "the pods.", clients=("gateway",), request=NoBody, reply=PodList)
SPAWN = command(
    _P + "spawn",
    "spawn one pod (reserved first).",
    clients=("gateway",),
    request=SpawnRequest,
    reply=SpawnAnswer,
)
TERMINATE = command(
    _P + "terminate", "terminate one pod.", clients=("gateway",), request=PodRef, reply=PodView
)
SHUTDOWN_ALL = command(
    _P + "shutdown_all",
    "terminate every pod now.",
    clients=("gateway",),
    request=NoBody,
    reply=ShutdownAnswer,
)
CONFIG = command(
    _P + "config",
    "change the [cloud] settings (validated).",
    clients=("gateway",),
    request=dict,
    reply=ConfigAnswer,
)
