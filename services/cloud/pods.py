"""The pod client: one interface to rent GPU pods, its errors, dry-run pods, the stuck rule.

``PodClient`` is what the cloud service codes against; ``pod_client()`` picks the
implementation: ``RunPodV2Client`` (``runpod_v2.py``, RunPod REST API v2) when a RunPod
key is set and the ``[cloud.pods] dry_run`` setting is off (the one switch); otherwise
``DryRunPods``, whose ``reason`` says why. Every ``PodInfo`` says ``dry_run`` truly.
A v1 or GraphQL client could sit behind the same interface.

Errors (every one a ``GpurouteError``; messages are one line ``"runpod <call>: ..."``
and never hold the API key or a pod's env values)::

    CloudError                  root; ``call`` names the operation (create, get, ...)
    ├── PodNotFound             no pod with that id (``pod_id``); an HTTP 404 on a pod
    ├── ProviderProblem         RunPod answered an error status: ``status``, ``title``,
    │   │                       ``detail`` of its RFC 9457 problem (``errors``: the
    │   │                       validation failures of a 422)
    │   └── RateLimited         429 after the retries allowed (``retry_after_s``)
    ├── ProviderUnreachable     no answer: timeout, refused or broken connection
    └── MalformedAnswer         an answer that is not the JSON the API documents, or
                                is over the size limit
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final, Protocol

import msgspec

from schemas.cloud import PodInfo, PodPort, PodSpec, PodsSettings, PodStatus
from services.runtime.clock import Clock
from services.runtime.errors import GpurouteError
from services.runtime.secrets import SecretStore

if TYPE_CHECKING:
    from services.runtime.http import HttpOptions

PROVIDER: Final = "runpod"
MAX_DRY_PODS: Final = 10_000
"""Dry-run pods remembered; past it the oldest terminated ones are forgotten."""


class CloudError(GpurouteError):
    """Root of the pod client's errors; ``str(err)`` is one readable line."""

    def __init__(self, call: str, reason: str) -> None:
        self.call = call
        self.reason = reason
        super().__init__(f"{PROVIDER} {call}: {reason}")

    def to_dict(self) -> dict[str, object]:
        """The error as plain data, for an error reply or an event payload."""
        return {"error": type(self).__name__, "call": self.call, "reason": self.reason}


class PodNotFound(CloudError):
    def __init__(self, call: str, pod_id: str, reason: str = "") -> None:
        self.pod_id = pod_id
        super().__init__(call, f"no pod {pod_id!r}" + (f" ({reason})" if reason else ""))


class ProviderProblem(CloudError):
    """An RFC 9457 problem (or any error status) from the provider."""

    def __init__(
        self, call: str, *, status: int, title: str, detail: str, errors: list[str] | None = None
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors or [])
        text = f"HTTP {status} {title}: {detail}" if detail else f"HTTP {status} {title}"
        if self.errors:
            text += " [" + "; ".join(self.errors) + "]"
        super().__init__(call, text)

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data.update(status=self.status, title=self.title, detail=self.detail)
        return data


class RateLimited(ProviderProblem):
    def __init__(
        self, call: str, *, status: int, title: str, detail: str, retry_after_s: float | None
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(call, status=status, title=title, detail=detail)

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data["retry_after_s"] = self.retry_after_s
        return data


class ProviderUnreachable(CloudError):
    """The provider gave no usable answer (after the retries allowed)."""


class MalformedAnswer(CloudError):
    """The provider answered, but not with what its API documents."""


class PodClient(Protocol):
    """Rent, watch and release pods. Every call may raise a ``CloudError``."""

    dry_run: bool

    async def create(self, spec: PodSpec) -> PodInfo:
        """Create a pod; it starts PROVISIONING (RunPod provisions asynchronously)."""
        ...

    async def get(self, pod_id: str) -> PodInfo:
        """The pod now; ``PodNotFound`` if the provider does not know it."""
        ...

    async def list(self) -> list[PodInfo]:
        """Every pod of the account that is not TERMINATED (RunPod lists no deleted pod)."""
        ...

    async def terminate(self, pod_id: str) -> PodInfo:
        """Delete the pod for good and stop its billing; a pod already TERMINATED is
        answered as it is. ``PodNotFound`` for an id the provider never knew (or has
        forgotten: the caller that spawned it may read that as terminated)."""
        ...

    async def aclose(self) -> None: ...


def stuck(
    info: PodInfo, first_seen_running_at: float | None, now: float, limit_s: float
) -> str | None:
    """Why ``info`` counts as failed, or None: a pod RUNNING with no port for longer than
    ``limit_s`` seconds since it was first seen RUNNING (RunPod bills a RUNNING pod whose
    container never came up), or a pod in ERROR. Times are the caller's clock, seconds."""
    if info.status == "ERROR":
        return f"pod {info.id} is in ERROR"
    if info.status != "RUNNING" or info.ports or first_seen_running_at is None:
        return None
    waited = now - first_seen_running_at
    if waited <= limit_s:
        return None
    return (
        f"pod {info.id} has been RUNNING for {waited:.0f} s with no ports "
        f"(limit {limit_s:g} s): its container never came up"
    )


def proxy_url(template: str, pod_id: str, port: int) -> str:
    """An HTTP port's URL from ``template`` (``{pod_id}``, ``{port}``), as RunPod's proxy
    names it: ``https://{pod_id}-{port}.proxy.runpod.net``."""
    return template.replace("{pod_id}", pod_id).replace("{port}", str(port))


def spec_ports(spec_ports: list[str]) -> list[tuple[int, str]]:
    """``["8188/http"]`` as ``[(8188, "http")]`` (the spec's pattern already checked them)."""
    found = []
    for text in spec_ports:
        port, _, protocol = text.partition("/")
        found.append((int(port), protocol))
    return found


class _DryPod(msgspec.Struct, kw_only=True):
    spec: PodSpec
    id: str
    created_at: float
    ended: PodStatus | None = None
    ended_at: float | None = None


class DryRunPods:
    """Simulated pods: no network, driven by the injected clock, deterministic.

    A pod is PROVISIONING for the first half of ``dry_boot_s`` after its create,
    STARTING for the second half, then RUNNING with every spec port at its proxy URL
    and ``uptime_s`` counted from then. Its id is ``dry-`` + 12 hex digits of SHA-256
    over (``dry_seed``, the pod name, how many pods of that name this client created
    before), so the same seed, names and clock give the same ids and statuses in any
    process, and a fresh process creating a new name never reuses an old id.
    """

    dry_run = True

    def __init__(self, settings: PodsSettings, clock: Clock, *, reason: str = "") -> None:
        self.settings = settings
        self.reason = reason
        self._clock = clock
        self._pods: dict[str, _DryPod] = {}
        self._names: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"DryRunPods(reason={self.reason!r}, pods={len(self._pods)})"

    async def create(self, spec: PodSpec) -> PodInfo:
        n = self._names.get(spec.name, 0)
        self._names[spec.name] = n + 1
        digest = hashlib.sha256(f"{self.settings.dry_seed}\0{spec.name}\0{n}".encode())
        pod = _DryPod(spec=spec, id="dry-" + digest.hexdigest()[:12], created_at=self._now())
        self._pods[pod.id] = pod
        self._forget_old()
        return self._info(pod)

    async def get(self, pod_id: str) -> PodInfo:
        return self._info(self._find("get", pod_id))

    async def list(self) -> list[PodInfo]:
        return [self._info(p) for p in self._pods.values() if p.ended != "TERMINATED"]

    async def terminate(self, pod_id: str) -> PodInfo:
        return self._end("terminate", pod_id, "TERMINATED")

    async def stop(self, pod_id: str) -> PodInfo:
        """Stop the pod (EXITED: no cost, disk kept); a TERMINATED pod stays so."""
        return self._end("stop", pod_id, "EXITED")

    async def aclose(self) -> None:
        return None

    def _end(self, call: str, pod_id: str, status: PodStatus) -> PodInfo:
        pod = self._find(call, pod_id)
        if pod.ended != "TERMINATED":
            pod.ended, pod.ended_at = status, self._now()
        return self._info(pod)

    def _find(self, call: str, pod_id: str) -> _DryPod:
        pod = self._pods.get(pod_id)
        if pod is None:
            raise PodNotFound(call, pod_id, "no dry-run pod has that id")
        return pod

    def _now(self) -> float:
        return self._clock.now()

    def _status(self, pod: _DryPod, age: float) -> PodStatus:
        if pod.ended is not None:
            return pod.ended
        boot = self.settings.dry_boot_s
        if age >= boot:
            return "RUNNING"
        return "PROVISIONING" if age < boot / 2 else "STARTING"

    def _info(self, pod: _DryPod) -> PodInfo:
        now = self._now() if pod.ended_at is None else pod.ended_at
        age = max(0.0, now - pod.created_at)
        status = self._status(pod, age)
        running = status == "RUNNING"
        ports = [
            PodPort(
                private=port, protocol=protocol,
                url=proxy_url(self.settings.proxy_url, pod.id, port) if protocol == "http"
                else None,
            )
            for port, protocol in spec_ports(pod.spec.ports)
        ] if running else []  # fmt: skip
        cost = self.settings.dry_cost_per_hour * pod.spec.gpu_count if pod.ended is None else 0.0
        uptime = age - self.settings.dry_boot_s
        return PodInfo(
            id=pod.id, name=pod.spec.name, status=status, cost_per_hour=cost,
            uptime_s=uptime if running else None, ports=ports, gpu_id=pod.spec.gpu_id,
            gpu_count=pod.spec.gpu_count, dry_run=True,
        )  # fmt: skip

    def _forget_old(self) -> None:
        if len(self._pods) <= MAX_DRY_PODS:
            return
        for pod_id in [i for i, p in self._pods.items() if p.ended == "TERMINATED"]:
            del self._pods[pod_id]
            if len(self._pods) <= MAX_DRY_PODS:
                return


def dry_run_reason(settings: PodsSettings, secrets: SecretStore) -> str:
    """Why pods are simulated (every reason that applies), or ``""`` when they go live."""
    reasons = []
    if settings.dry_run:
        reasons.append("the [cloud.pods] dry_run setting is on")
    if secrets.get(PROVIDER, "api_key") is None:
        reasons.append("no RunPod API key (RUNPOD_API_KEY or [runpod] api_key in the secrets file)")
    return "; ".join(reasons)


def pod_client(
    settings: PodsSettings,
    secrets: SecretStore,
    clock: Clock,
    *,
    options: HttpOptions | None = None,
) -> PodClient:
    """The live RunPod v2 client when ``dry_run_reason`` is empty, else ``DryRunPods``;
    ``options`` carries the HTTP policy's test seams (sleep, rng, session)."""
    reason = dry_run_reason(settings, secrets)
    key = secrets.get(PROVIDER, "api_key")
    if reason or key is None:
        return DryRunPods(settings, clock, reason=reason)
    from .runpod_v2 import RunPodV2Client  # the live client pulls in aiohttp

    return RunPodV2Client(settings, api_key=key, options=options)
