"""A local stand-in for RunPod REST API v2's pod routes, on 127.0.0.1.

It follows RunPod's OpenAPI document (runpod/docs ``api-reference-v2/openapi.json``):
``POST /v2/pods`` (a strict ``CreatePodRequest``: an unknown field is a 422 naming it,
``gpu`` required here since we rent GPU pods) -> 201 ``Pod``; ``GET /v2/pods`` ->
``{"pods": [...]}`` without TERMINATED pods; ``GET /v2/pods/{id}``; ``POST
/v2/pods/{id}/action`` (the ``actions`` a status allows, else 409; terminate -> 204);
``DELETE /v2/pods/{id}`` -> 204; errors as ``application/problem+json``; a missing or
wrong Bearer key is a 401.

Pods go PROVISIONING -> STARTING -> RUNNING by ``step()``, or by themselves on the
injected ``clock`` when ``boot_s`` is set (half of it in each state). Knobs:
``inject()`` queues a scripted answer (a 429 with ``Retry-After``/``RateLimit``, a
5xx, a problem+json 400, a malformed or oversize body) for the next matching
requests; ``empty_runtime`` makes new pods come up RUNNING with no ports (or
``break_pod(id, "empty")`` one pod); ``break_pod(id, "error")`` puts one in ERROR.
``calls`` records every request (method, path, JSON body, whether the key was right)
so tests can assert what the client sent. The API key is never echoed back.

Usage: ``async with RunPodV2Standin(api_key="k") as standin: standin.base_url``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal

import msgspec
from aiohttp import web

from services.runtime.clock import Clock, ManualClock

ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    "PROVISIONING": ("stop", "terminate"),
    "STARTING": ("stop", "terminate"),
    "RUNNING": ("stop", "restart", "terminate"),
    "EXITED": ("start", "terminate"),
    "ERROR": ("start", "terminate"),
    "TERMINATED": (),
}
_NEXT: Final = {"PROVISIONING": "STARTING", "STARTING": "RUNNING"}


class _Gpu(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    count: int = 1


class _Create(msgspec.Struct, forbid_unknown_fields=True):
    """``CreatePodRequest``, the fields gpuroute may send (others: 422, as RunPod)."""

    name: str
    image: str
    gpu: _Gpu
    cloud: Literal["SECURE", "COMMUNITY"] = "SECURE"
    ports: list[str] = msgspec.field(default_factory=list)
    env: dict[str, str] = msgspec.field(default_factory=dict)


@dataclass
class Call:
    method: str
    path: str
    body: Any
    authorized: bool


@dataclass
class Scripted:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    times: int
    method: str | None
    path: str | None


@dataclass
class Pod:
    id: str
    spec: _Create
    created_at: float
    status: str = "PROVISIONING"
    changed_at: float = 0.0
    running_since: float | None = None
    empty_runtime: bool = False
    cost: float = 0.44

    def document(self, now: float) -> dict[str, Any]:
        """The pod as ``GET /v2/pods/{id}`` answers it (the fields of ``Pod``)."""
        runtime = None
        if self.status == "RUNNING":
            ports = [] if self.empty_runtime else _runtime_ports(self.spec.ports)
            uptime = int(now - (self.running_since or now))
            runtime = {"uptime": uptime, "gpus": [], "ports": ports}
        billed = self.status not in ("EXITED", "TERMINATED")
        return {
            "id": self.id, "name": self.spec.name, "image": self.spec.image, "args": "",
            "disk": 50, "ports": self.spec.ports, "env": {k: "" for k in self.spec.env},
            "registry": None, "status": self.status, "actions": list(ACTIONS[self.status]),
            "mounts": {}, "gpu": {"id": self.spec.gpu.id, "count": self.spec.gpu.count},
            "cloud": self.spec.cloud, "dataCenterId": "US-TX-3", "cudaVersion": "12.8",
            "ssh": {}, "template": None, "cost": self.cost if billed else 0.0,
            "locked": False, "globalNetworking": {"enabled": False}, "runtime": runtime,
            "createdAt": "2026-06-01T12:00:00Z", "startedAt": None,
        }  # fmt: skip


def _runtime_ports(specs: list[str]) -> list[dict[str, Any]]:
    found = []
    for i, text in enumerate(specs):
        port, _, protocol = text.partition("/")
        tcp = protocol != "http"
        found.append({
            "private": int(port), "public": 40000 + i if tcp else None,
            "type": protocol, "ip": "127.0.0.1" if tcp else None,
        })  # fmt: skip
    return found


def problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    body = {"title": title, "status": status, "detail": detail, **extra}
    return web.json_response(body, status=status, content_type="application/problem+json")


@dataclass
class RunPodV2Standin:
    api_key: str = "standin-key"
    clock: Clock = field(default_factory=ManualClock)
    boot_s: float | None = None
    cost_per_hour: float = 0.44
    empty_runtime: bool = False
    calls: list[Call] = field(default_factory=list)
    pods: dict[str, Pod] = field(default_factory=dict)
    _scripted: list[Scripted] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    async def __aenter__(self) -> RunPodV2Standin:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> str:
        """Serve on 127.0.0.1 at a free port; returns ``base_url`` (``.../v2``)."""
        app = web.Application()
        app.router.add_route("*", "/v2/pods", self._pods)
        app.router.add_route("*", "/v2/pods/{id}", self._pod)
        app.router.add_route("POST", "/v2/pods/{id}/action", self._pod)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v2"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- knobs ----------------------------------------------------------------------

    def inject(
        self, status: int, body: bytes | dict[str, Any] | None = None, *,
        headers: dict[str, str] | None = None, times: int = 1, method: str | None = None,
        path: str | None = None, content_type: str | None = None,
    ) -> None:  # fmt: skip
        """Answer the next ``times`` requests (matching ``method``/``path`` if given)
        with ``status``; a dict body is sent as JSON (problem+json for an error)."""
        if isinstance(body, dict):
            raw = json.dumps(body).encode()
            kind = content_type or (
                "application/json" if status < 400 else "application/problem+json"
            )
        else:
            raw = body or b""
            kind = content_type or "application/json"
        self._scripted.append(Scripted(status, raw, kind, dict(headers or {}), times, method, path))

    def step(self, pod_id: str | None = None) -> None:
        """Move one pod (or every booting pod) to its next state."""
        for pod in [self.pods[pod_id]] if pod_id else list(self.pods.values()):
            if pod.status in _NEXT:
                self._move(pod, _NEXT[pod.status], self.clock.now())

    def boot(self, pod_id: str | None = None) -> None:
        """Step until RUNNING."""
        self.step(pod_id)
        self.step(pod_id)

    def break_pod(self, pod_id: str, how: Literal["empty", "error"]) -> None:
        pod = self.pods[pod_id]
        if how == "empty":
            pod.empty_runtime = True
        else:
            self._move(pod, "ERROR", self.clock.now())

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for c in self.calls if c.method == method and c.path.startswith(path_prefix))

    # --- routes ---------------------------------------------------------------------

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        early = await self._enter(request)
        if early is not None:
            return early
        if request.method == "GET":
            now = self.clock.now()
            listed = [p.document(now) for p in self._ticked() if p.status != "TERMINATED"]
            return web.json_response({"pods": listed})
        if request.method != "POST":
            return problem(405, "Method Not Allowed", "use GET or POST")
        try:
            spec = msgspec.json.decode(await request.read(), type=_Create)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return problem(422, "Unprocessable Entity", "Request validation failed.",
                           errors=[str(e)])  # fmt: skip
        now = self.clock.now()
        pod_id = f"standin{len(self.pods) + 1:04d}"
        cost = self.cost_per_hour * spec.gpu.count
        pod = Pod(id=pod_id, spec=spec, created_at=now, changed_at=now,
                  empty_runtime=self.empty_runtime, cost=cost)  # fmt: skip
        self.pods[pod_id] = pod
        return web.json_response(pod.document(now), status=201)

    async def _pod(self, request: web.Request) -> web.StreamResponse:
        early = await self._enter(request)
        if early is not None:
            return early
        pod = self._lookup(request)
        if pod is None:
            return problem(404, "Not Found", "The requested Pod does not exist.")
        if request.path.endswith("/action"):
            return self._act(pod, self.calls[-1].body)
        if request.method == "GET":
            return web.json_response(pod.document(self.clock.now()))
        if request.method == "DELETE":
            self._move(pod, "TERMINATED", self.clock.now())
            return web.Response(status=204)
        return problem(405, "Method Not Allowed", "use GET, PATCH or DELETE")

    def _act(self, pod: Pod, body: Any) -> web.StreamResponse:
        action = body.get("action") if isinstance(body, dict) else None
        if action not in ("start", "stop", "restart", "terminate"):
            return problem(422, "Unprocessable Entity", "Request validation failed.",
                           errors=[f"$.action: {action!r} is not a PodAction"])  # fmt: skip
        if action not in ACTIONS[pod.status]:
            return problem(409, "Conflict", f"cannot {action} a pod that is {pod.status}")
        now = self.clock.now()
        target = {"start": "PROVISIONING", "stop": "EXITED", "restart": "RUNNING",
                  "terminate": "TERMINATED"}[action]  # fmt: skip
        self._move(pod, target, now)
        if action == "terminate":
            return web.Response(status=204)
        return web.json_response(pod.document(now))

    async def _enter(self, request: web.Request) -> web.StreamResponse | None:
        """Record the call; answer a scripted fault or a 401, else None."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        authorized = request.headers.get("Authorization") == f"Bearer {self.api_key}"
        self.calls.append(Call(request.method, request.path, body, authorized))
        for script in self._scripted:
            if (script.method or request.method) == request.method and request.path.startswith(
                script.path or ""
            ):
                script.times -= 1
                if script.times <= 0:
                    self._scripted.remove(script)
                headers = {"Content-Type": script.content_type, **script.headers}
                return web.Response(status=script.status, body=script.body, headers=headers)
        if not authorized:
            return problem(401, "Unauthorized", "missing or invalid bearer token")
        return None

    def _lookup(self, request: web.Request) -> Pod | None:
        pod = self.pods.get(request.match_info["id"])
        if pod is not None:
            self._tick(pod)
        return pod

    def _ticked(self) -> list[Pod]:
        for pod in self.pods.values():
            self._tick(pod)
        return list(self.pods.values())

    def _tick(self, pod: Pod) -> None:
        """Boot on the clock when ``boot_s`` is set: half of it in each booting state."""
        if self.boot_s is None:
            return
        half = self.boot_s / 2
        while pod.status in _NEXT and self.clock.now() - pod.changed_at >= half:
            self._move(pod, _NEXT[pod.status], pod.changed_at + half)

    def _move(self, pod: Pod, status: str, at: float) -> None:
        pod.status, pod.changed_at = status, at
        pod.running_since = at if status == "RUNNING" else None
