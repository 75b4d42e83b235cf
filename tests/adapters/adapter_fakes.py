"""Local stand-ins for each provider's published API, served on 127.0.0.1.

Each ``*_app(fake)`` builds an aiohttp app that answers like the provider (routes,
statuses, bodies, auth) as the adapter modules' docstrings cite. ``Fake`` records
every request and lets a test script the next answers of a route: an error status
with a ``Retry-After``, a malformed body, or a slow answer that trips a timeout.
Slow answers wait on ``fake.release`` so teardown never waits for them.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "tok-LEAKCHECK-9f2b7c41d0"
MODAL_ID = "wk-LEAKCHECK-id-77aa"
MODAL_SECRET = "ws-LEAKCHECK-secret-88bb"
PROXY_AUTH = "credentials for proxy authorization"


@dataclass
class Scripted:
    """One scripted answer: status, body (str/bytes, or JSON-able), headers, delay."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bool = False  # body is sent as text, not JSON-encoded
    content_type: str = "application/json"  # of a raw body


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Fake:
    """State shared by a fake provider app and the test that drives it."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.plans: dict[str, list[Scripted]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.release = asyncio.Event()
        self.counter = 0
        self.extra: dict[str, Any] = {}

    def plan(self, route: str, *answers: Scripted) -> None:
        self.plans.setdefault(route, []).extend(answers)

    def count(self, route_prefix: str) -> int:
        routes = (f"{seen.method} {seen.path}" for seen in self.requests)
        return sum(1 for route in routes if route.startswith(route_prefix))

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    async def record(self, request: web.Request) -> None:
        text = await request.text()
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        self.requests.append(Seen(request.method, request.path_qs, dict(request.headers), body))

    async def scripted(self, route: str) -> web.Response | None:
        queue = self.plans.get(route)
        if not queue:
            return None
        answer = queue.pop(0)
        if answer.delay_s:
            try:
                await asyncio.wait_for(self.release.wait(), answer.delay_s)
            except TimeoutError:
                pass
        if answer.raw or isinstance(answer.body, (str, bytes)):
            body = answer.body if isinstance(answer.body, bytes) else str(answer.body or "")
            return web.Response(
                status=answer.status,
                body=body if isinstance(body, bytes) else body.encode(),
                headers=answer.headers,
                content_type=answer.content_type,
            )
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)


def _bearer_ok(request: web.Request) -> bool:
    return request.headers.get("Authorization") == f"Bearer {TOKEN}"


# --- RunPod: POST /v2/{endpoint}/run, GET status/{id}, POST cancel/{id}, GET health ---

RUNPOD_FLOW = ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


def runpod_app(fake: Fake) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        await fake.record(request)
        op = request.match_info["op"]
        scripted = await fake.scripted(op)
        if scripted is not None:
            return scripted
        if not _bearer_ok(request):
            return web.Response(status=401, text="Unauthorized")
        if op == "run":
            body = fake.requests[-1].body
            if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
                return web.json_response({"error": "input is required"}, status=400)
            job_id = fake.next_id("rp")
            fake.jobs[job_id] = {"step": 0, "flow": fake.extra.get("flow", RUNPOD_FLOW)}
            return web.json_response({"id": job_id, "status": "IN_QUEUE"})
        if op == "health":
            return web.json_response(
                fake.extra.get(
                    "health",
                    {
                        "jobs": {
                            "completed": 3,
                            "failed": 0,
                            "inProgress": 1,
                            "inQueue": 2,
                            "retried": 0,
                        },
                        "workers": {"idle": 1, "running": 1},
                    },
                )
            )
        job_id = request.match_info.get("job", "")
        job = fake.jobs.get(job_id)
        if job is None:
            return web.json_response({"error": "request does not exist"}, status=404)
        if op == "cancel":
            job["flow"], job["step"] = ["CANCELLED"], 0
            return web.json_response({"id": job_id, "status": "CANCELLED"})
        flow = job["flow"]
        status = flow[min(job["step"], len(flow) - 1)]
        job["step"] += 1
        answer: dict[str, Any] = {"id": job_id, "status": status, "delayTime": 120}
        if status == "COMPLETED":
            answer["executionTime"] = 2300
            answer["output"] = fake.extra.get(
                "output", {"images": ["https://cdn.example/rp/out.png"], "seed": 7}
            )
        if status == "FAILED":
            answer["error"] = "CUDA out of memory"
        return web.json_response(answer)

    app = web.Application()
    app.router.add_route("*", "/v2/{endpoint}/{op}", handle)
    app.router.add_route("*", "/v2/{endpoint}/{op}/{job}", handle)
    return app


# --- Replicate: /v1/predictions, /v1/models/.../predictions, /v1/deployments/..., ---

REPLICATE_FLOW = ["starting", "processing", "succeeded"]


def _prediction(job_id: str, status: str, job: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": job_id,
        "model": job["model"],
        "version": job["version"],
        "status": status,
        "input": job["input"],
        "output": None,
        "logs": "",
        "error": None,
        "metrics": {},
        "created_at": "2025-01-01T00:00:00Z",
        "started_at": None,
        "completed_at": None,
        "urls": {"get": f"/v1/predictions/{job_id}", "cancel": f"/v1/predictions/{job_id}/cancel"},
    }
    if status == "processing":
        answer["logs"] = "loading weights\n 50%|#####     | 10/20 [00:01<00:01]"
    if status == "succeeded":
        answer["output"] = ["https://replicate.delivery/pbxt/out-0.png"]
        answer["logs"] = "100%|##########| 20/20 [00:02<00:00]"
    if status == "failed":
        answer["error"] = "NSFW content detected"
    return answer


def replicate_app(fake: Fake) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        await fake.record(request)
        route = request.match_info["route"]
        scripted = await fake.scripted(f"{request.method} {route}")
        if scripted is not None:
            return scripted
        if not _bearer_ok(request):
            return web.json_response(
                {
                    "title": "Unauthenticated",
                    "status": 401,
                    "detail": "You did not pass a valid authentication token",
                },
                status=401,
            )
        parts = route.strip("/").split("/")
        body = fake.requests[-1].body
        if request.method == "POST" and parts[-1] == "predictions":
            if not isinstance(body, dict) or "input" not in body:
                return web.json_response({"detail": "input is required", "status": 422}, status=422)
            job_id = fake.next_id("rep")
            fake.jobs[job_id] = {
                "step": 0,
                "flow": fake.extra.get("flow", REPLICATE_FLOW),
                "input": body["input"],
                "model": "/".join(parts[1:3]) if parts[0] in ("models", "deployments") else "",
                "version": body.get("version", ""),
            }
            return web.json_response(_prediction(job_id, "starting", fake.jobs[job_id]), status=201)
        if parts == ["account"]:
            return web.json_response({"type": "user", "username": "tester", "name": "T"})
        job = fake.jobs.get(parts[1]) if len(parts) > 1 else None
        if parts[0] != "predictions" or job is None:
            return web.json_response({"detail": "Not found.", "status": 404}, status=404)
        if parts[-1] == "cancel":
            job["flow"], job["step"] = ["canceled"], 0
            return web.json_response(_prediction(parts[1], "canceled", job))
        flow = job["flow"]
        status = flow[min(job["step"], len(flow) - 1)]
        job["step"] += 1
        return web.json_response(_prediction(parts[1], status, job))

    app = web.Application()
    app.router.add_route("*", "/v1{route:/.*}", handle)
    return app


# --- Hugging Face: management API /v2/endpoint/{ns}/{name}[/action], inference URL ---


def hf_app(fake: Fake) -> web.Application:
    fake.extra.setdefault("state", "running")
    fake.extra.setdefault("cold_503s", 2)

    def document(request: web.Request) -> dict[str, Any]:
        url = str(request.url.with_path("/infer").with_query(None))
        state = fake.extra["state"]
        return {
            "name": request.match_info["name"],
            "type": "protected",
            "healthRoute": "/health",
            "model": {
                "repository": "org/model",
                "framework": "pytorch",
                "revision": "abc",
                "task": "text-generation",
            },
            "status": {
                "state": state,
                "url": None if state in ("pending", "paused") else url,
                "createdAt": "2025-01-01T00:00:00Z",
                "updatedAt": "2025-01-01T00:00:00Z",
            },
        }

    async def manage(request: web.Request) -> web.StreamResponse:
        await fake.record(request)
        scripted = await fake.scripted("manage")
        if scripted is not None:
            return scripted
        if not _bearer_ok(request):
            invalid = {"error": "Invalid credentials in Authorization header"}
            return web.json_response(invalid, status=401)
        action = request.match_info.get("action")
        if action is not None:
            fake.extra["state"] = {
                "pause": "paused",
                "resume": "initializing",
                "scale-to-zero": "scaledToZero",
            }[action]
        return web.json_response(document(request))

    async def infer(request: web.Request) -> web.StreamResponse:
        await fake.record(request)
        scripted = await fake.scripted("infer")
        if scripted is not None:
            return scripted
        if not _bearer_ok(request):
            return web.json_response({"error": "Authorization header is invalid"}, status=401)
        if fake.extra["state"] == "scaledToZero":
            if "X-Scale-Up-Timeout" in request.headers:
                fake.extra["state"] = "running"  # the proxy held the request meanwhile
            elif fake.extra["cold_503s"] > 0:
                fake.extra["cold_503s"] -= 1
                return web.json_response(
                    {"error": "Service Unavailable"}, status=503, headers={"Retry-After": "1"}
                )
            else:
                fake.extra["state"] = "running"
        if fake.extra.get("image"):
            return web.Response(body=b"\x89PNG....", content_type="image/png")
        return web.json_response([{"generated_text": "hello from the endpoint"}])

    app = web.Application()
    app.router.add_get("/v2/endpoint/{ns}/{name}", manage)
    app.router.add_post("/v2/endpoint/{ns}/{name}/{action}", manage)
    app.router.add_post("/infer", infer)
    return app


# --- Modal: the documented job-queue web app behind proxy auth ---


def modal_app(fake: Fake) -> web.Application:
    fake.extra.setdefault("pending_polls", 1)

    def authorized(request: web.Request) -> web.Response | None:
        key, secret = request.headers.get("Modal-Key"), request.headers.get("Modal-Secret")
        if key is None or secret is None:
            return web.Response(status=401, text=f"modal-http: missing {PROXY_AUTH}")
        if (key, secret) != (MODAL_ID, MODAL_SECRET):
            return web.Response(status=401, text=f"modal-http: invalid {PROXY_AUTH}")
        return None

    async def handle(request: web.Request) -> web.StreamResponse:
        await fake.record(request)
        op = request.match_info["op"]
        scripted = await fake.scripted(op)
        if scripted is not None:
            return scripted
        refused = authorized(request)
        if refused is not None:
            return refused
        if op == "submit":
            call_id = fake.next_id("fc")
            fake.jobs[call_id] = {"polls": 0, "fail": bool(fake.extra.get("fail"))}
            if fake.extra.get("bare_id"):
                return web.json_response(call_id)
            return web.json_response({"call_id": call_id})
        if op == "health":
            return web.json_response("ok")
        job = fake.jobs.get(request.match_info.get("call", ""))
        if job is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        if op == "cancel":
            job["cancelled"] = True
            return web.json_response(None)
        job["polls"] += 1
        if job["polls"] <= fake.extra["pending_polls"] and not job.get("cancelled"):
            return web.json_response("", status=202)
        if job["fail"] or job.get("cancelled"):  # FunctionCall.get() raises: FastAPI's 500
            return web.Response(status=500, text="Internal Server Error")
        return web.json_response({"images": ["https://modal.example/out.png"], "ok": True})

    app = web.Application()
    app.router.add_route("*", "/{op}", handle)
    app.router.add_route("*", "/{op}/{call}", handle)
    return app
