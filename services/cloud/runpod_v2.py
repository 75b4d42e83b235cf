"""RunPod REST API v2 pod client (``https://api.runpod.io/v2``).

Follows RunPod's published OpenAPI document ``api-reference-v2/openapi.json`` (repo
runpod/docs, "Runpod REST API" 2.0.0) and its guide ``api-reference-v2/
migrate-from-v1.mdx``:

- ``POST /pods`` with ``CreatePodRequest`` (``name``, ``image``, ``gpu: {id, count}``,
  ``cloud``, ``ports`` as ``"8188/http"``, ``env``) -> 201 and the ``Pod``, which starts
  PROVISIONING; ``GET /pods/{id}`` -> ``Pod``; ``GET /pods`` -> ``{"pods": [...]}``
  (the document defines no paging: one answer holds every pod, bounded by the body
  limit); ``POST /pods/{id}/action {"action": "terminate" | "stop" | ...}`` -> 204 for
  terminate, 200 and the ``Pod`` otherwise, 409 when the pod's status does not allow
  it; ``DELETE /pods/{id}`` -> 204.
- ``Pod.cost`` is USD per hour (0.0 once EXITED or TERMINATED); ``Pod.runtime`` is null
  unless RUNNING and then carries ``uptime`` (s) and ``ports`` (``private``, ``public``,
  ``type``, ``ip``). The API gives no URL for an HTTP port: it is RunPod's proxy,
  ``https://{podId}-{port}.proxy.runpod.net`` (docs pods/configuration/expose-ports),
  from ``PodsSettings.proxy_url``.
- Errors are RFC 9457 problems (``title``, ``status``, ``detail``, ``errors``); a 429
  carries ``Retry-After`` and ``RateLimit`` (``"minute";r=0;t=12``) headers.

HTTP goes through the adapters' ``ProviderHttp`` (timeouts, bounded bodies, retries with
backoff that honour ``Retry-After``/``RateLimit`` within one ``RetryPolicy``, redaction
of the key). Retried: every GET, terminate, stop and DELETE (idempotent), on 429 and
502/503/504; a create only on 429 (refused unprocessed), never on a 5xx or timeout,
where a lost answer may hide a pod that bills.
"""

from __future__ import annotations

import dataclasses
import http
import re
from typing import Annotated, Final, TypeVar

import msgspec

from schemas import limits
from schemas.adapter_settings import RetryPolicy
from schemas.cloud import PodInfo, PodPort, PodSpec, PodsSettings, PodStatus
from services.runtime.http import HttpOptions, HttpReply, ProviderHttp, join_url, segment
from services.runtime.provider_errors import (
    MalformedResponseError,
    ProviderHTTPError,
    RateLimitedError,
    TransportError,
)
from services.runtime.provider_errors import ProviderError as AdapterError
from services.runtime.secrets import Secret

from .pods import (
    PROVIDER,
    CloudError,
    MalformedAnswer,
    PodNotFound,
    ProviderProblem,
    ProviderUnreachable,
    RateLimited,
    proxy_url,
)

T = TypeVar("T")
MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024
"""The largest answer read (a list of some thousands of pods)."""
_RETRIED: Final = frozenset({429, 502, 503, 504})
_ALL: Final = frozenset(range(100, 600))
_POD_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")

PodId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


class _Port(msgspec.Struct, frozen=True):
    private: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    public: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    type: str = "http"
    ip: str | None = None


class _Runtime(msgspec.Struct, frozen=True):
    uptime: Annotated[float, msgspec.Meta(ge=0)] | None = None
    ports: list[_Port] | None = None


class _Gpu(msgspec.Struct, frozen=True):
    id: str
    count: int = 1


class _Pod(msgspec.Struct, frozen=True):
    """``Pod`` as far as we read it; other fields are skipped."""

    id: PodId
    name: str
    status: PodStatus
    cost: Annotated[float, msgspec.Meta(ge=0)]
    runtime: _Runtime | None = None
    gpu: _Gpu | None = None


class _PodList(msgspec.Struct, frozen=True):
    pods: list[_Pod]


class _Problem(msgspec.Struct, frozen=True):
    title: str = ""
    status: int | None = None
    detail: str = ""
    errors: list[str] | None = None


class _GpuRequest(msgspec.Struct, frozen=True):
    id: str
    count: int


class _CreatePod(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    image: str
    gpu: _GpuRequest
    cloud: str
    ports: list[str]
    env: dict[str, str] = msgspec.field(default_factory=dict)


class RunPodV2Client:
    """Live pods through RunPod REST API v2; see the module docstring."""

    dry_run = False

    def __init__(
        self, settings: PodsSettings, *, api_key: Secret, options: HttpOptions | None = None
    ) -> None:
        self.settings = settings
        retry = RetryPolicy(
            max_attempts=settings.max_attempts, max_retry_after_s=settings.max_retry_after_s
        )
        opts = dataclasses.replace(
            options or HttpOptions(), retry=retry, max_body_bytes=MAX_ANSWER_BYTES
        )
        self._http = ProviderHttp.build(
            PROVIDER,
            {"Authorization": Secret(f"Bearer {api_key.reveal()}")},
            settings.timeout_s,
            opts,
            redact=[api_key],
        )
        self._base = settings.base_url

    def __repr__(self) -> str:
        return f"RunPodV2Client(base_url={self._base!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(self, spec: PodSpec) -> PodInfo:
        body = _CreatePod(
            name=spec.name, image=spec.image, gpu=_GpuRequest(id=spec.gpu_id, count=spec.gpu_count),
            cloud=spec.cloud, ports=list(spec.ports), env=dict(spec.env),
        )  # fmt: skip
        hide = tuple(value for value in spec.env.values() if len(value) >= 4)
        reply = await self._call(
            "create", "POST", self._url("pods"), body=body, idempotent=False, hide=hide
        )
        return self._info(self._decode("create", reply, _Pod))

    async def get(self, pod_id: str) -> PodInfo:
        reply = await self._call("get", "GET", self._pod_url("get", pod_id), pod_id=pod_id)
        return self._info(self._decode("get", reply, _Pod))

    async def list(self) -> list[PodInfo]:
        reply = await self._call("list", "GET", self._url("pods"))
        return [self._info(pod) for pod in self._decode("list", reply, _PodList).pods]

    async def terminate(self, pod_id: str) -> PodInfo:
        """``POST /pods/{id}/action {"action": "terminate"}`` after a ``GET`` that says
        what is being terminated; a pod already TERMINATED is answered without a call,
        and one that vanishes or turns TERMINATED meanwhile (404/409) counts as done."""
        before = await self.get(pod_id)
        if before.status == "TERMINATED":
            return before
        try:
            await self._action("terminate", pod_id, "terminate")
        except PodNotFound:
            pass
        except ProviderProblem as e:
            if e.status != 409 or (await self._status_or_gone(pod_id)) != "TERMINATED":
                raise
        return _terminated(before)

    async def stop(self, pod_id: str) -> PodInfo:
        """Stop the pod (EXITED: compute released, disk kept, no GPU cost)."""
        reply = await self._action("stop", pod_id, "stop")
        if reply.status == 204 or not reply.body:
            return await self.get(pod_id)
        return self._info(self._decode("stop", reply, _Pod))

    async def delete(self, pod_id: str) -> None:
        """``DELETE /pods/{id}``: the same end as terminate, without reading the pod."""
        await self._call("delete", "DELETE", self._pod_url("delete", pod_id), pod_id=pod_id)

    async def _status_or_gone(self, pod_id: str) -> PodStatus:
        try:
            return (await self.get(pod_id)).status
        except PodNotFound:
            return "TERMINATED"

    async def _action(self, call: str, pod_id: str, action: str) -> HttpReply:
        url = join_url(self._pod_url(call, pod_id), "action")
        return await self._call(call, "POST", url, body={"action": action}, pod_id=pod_id)

    def _url(self, *parts: str) -> str:
        return join_url(self._base, *parts)

    def _pod_url(self, call: str, pod_id: str) -> str:
        if not _POD_ID.fullmatch(pod_id):
            raise PodNotFound(call, pod_id[:200], "not a RunPod pod id")
        return self._url("pods", segment(pod_id))

    async def _call(
        self, call: str, method: str, url: str, *, body: object = None,
        idempotent: bool = True, pod_id: str | None = None, hide: tuple[str, ...] = (),
    ) -> HttpReply:  # fmt: skip
        """One request through ``ProviderHttp``; an error status becomes a ``CloudError``
        whose text has the key and every string of ``hide`` (a pod's env values)
        redacted."""
        retried = _RETRIED if idempotent else frozenset({429})
        try:
            reply = await self._http.request(
                call, method, url, json_body=body, idempotent=idempotent,
                retry_statuses=retried, ok_statuses=_ALL - retried,
            )  # fmt: skip
        except AdapterError as e:
            raise self._translate(call, e, hide) from None
        if reply.status < 300:
            return reply
        raise self._problem(call, reply, pod_id, hide)

    def _decode(self, call: str, reply: HttpReply, type_: type[T]) -> T:
        try:
            return self._http.decode(call, reply, type_)
        except MalformedResponseError as e:
            raise MalformedAnswer(call, e.reason) from None

    def _problem(
        self, call: str, reply: HttpReply, pod_id: str | None, hide: tuple[str, ...]
    ) -> CloudError:
        """The ``CloudError`` for an error status, from its RFC 9457 body when it has one."""
        problem = _Problem()
        try:
            decoded = limits.decode(
                limits.decoder_for(_Problem), reply.body, max_bytes=64 * 1024, what="problem"
            )
            if isinstance(decoded, _Problem):
                problem = decoded
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        title = self._clip(problem.title, hide) or _phrase(reply.status)
        detail = self._clip(
            problem.detail or ("" if problem.title else self._http.detail(reply)), hide
        )
        if reply.status == 404 and pod_id is not None:
            return PodNotFound(call, pod_id, detail or title)
        errors = [self._clip(text, hide) for text in (problem.errors or [])[:20]]
        return ProviderProblem(call, status=reply.status, title=title, detail=detail, errors=errors)

    def _translate(self, call: str, error: AdapterError, hide: tuple[str, ...]) -> CloudError:
        """The adapters' HTTP errors, as the pod client's."""
        reason = self._clip(error.reason, hide)
        if isinstance(error, RateLimitedError):
            return RateLimited(
                call, status=error.status, title=_phrase(error.status),
                detail=_strip_status(reason), retry_after_s=error.retry_after_s,
            )  # fmt: skip
        if isinstance(error, ProviderHTTPError):
            return ProviderProblem(
                call, status=error.status, title=_phrase(error.status),
                detail=_strip_status(reason),
            )  # fmt: skip
        if isinstance(error, MalformedResponseError):
            return MalformedAnswer(call, reason)
        if isinstance(error, TransportError):
            return ProviderUnreachable(call, reason)
        return CloudError(call, reason)

    def _clip(self, text: str, hide: tuple[str, ...] = ()) -> str:
        text = self._http.redact(text.strip())
        for value in hide:
            text = text.replace(value, "***")
        return text[:300] + "..." if len(text) > 300 else text

    def _info(self, pod: _Pod) -> PodInfo:
        runtime = pod.runtime
        ports = [
            PodPort(
                private=port.private, public=port.public, protocol=port.type, ip=port.ip,
                url=proxy_url(self.settings.proxy_url, pod.id, port.private)
                if port.type == "http" else None,
            )
            for port in (runtime.ports or [] if runtime is not None else [])
        ]  # fmt: skip
        return PodInfo(
            id=pod.id, name=pod.name, status=pod.status, cost_per_hour=pod.cost,
            uptime_s=runtime.uptime if runtime is not None else None, ports=ports,
            gpu_id=pod.gpu.id if pod.gpu is not None else "",
            gpu_count=pod.gpu.count if pod.gpu is not None else 0, dry_run=False,
        )  # fmt: skip


def _terminated(info: PodInfo) -> PodInfo:
    return msgspec.structs.replace(info, status="TERMINATED", cost_per_hour=0.0, ports=[])


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _strip_status(reason: str) -> str:
    """``"HTTP 429: rate limit exceeded"`` (the adapters' wording) as its detail."""
    head, sep, rest = reason.partition(": ")
    return rest if sep and head.startswith("HTTP ") else reason
