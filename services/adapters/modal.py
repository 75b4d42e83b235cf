"""Modal adapter: a deployed Modal web endpoint in the documented job-queue pattern.

Modal has no public REST job API (its SDK talks gRPC), so this adapter calls a web
app the operator deploys. It follows:
- Modal guide "Job processing" (``Function.spawn()`` returns a ``FunctionCall`` whose
  ``object_id`` is the call id; ``FunctionCall.from_id(id).get(timeout=0)`` returns
  the result or raises ``TimeoutError`` while the call is still running) and the
  example ``modal-examples/09_job_queues/doc_ocr_webapp.py`` (a FastAPI app on
  ``@modal.asgi_app()``: ``POST /parse`` -> ``{"call_id": ...}``; ``GET
  /result/{call_id}`` -> ``202`` while pending, else the result; a call that raised
  comes back as FastAPI's ``500``);
- Modal guide "Proxy Auth Tokens": with ``requires_proxy_auth=True`` every request
  carries ``Modal-Key: <token id>`` and ``Modal-Secret: <token secret>`` (a missing
  pair is answered ``401 modal-http: missing credentials for proxy authorization``).
  ``modal.token_id`` / ``modal.token_secret`` hold that proxy auth token pair.

The app must expose (paths configurable): ``POST {submit_path}`` with the job input as
JSON body -> ``{"call_id": "fc-..."}`` (a bare JSON string is accepted too);
``GET {result_path}/{call_id}`` -> 200 result / 202 pending / 500 failed;
``POST {cancel_path}/{call_id}`` -> calls ``FunctionCall.cancel()``;
``GET {health_path}`` -> 200 with a JSON body.

A result is JSON (``output``; inline base64 in it is saved as artifacts) or binary
media (``image/*``, ``audio/*``, ``video/*``, ``application/octet-stream``, ...: saved
whole as an artifact). An HTML or other text answer is not the job-queue app (a wrong
``base_url`` answers a web page for any path): ``MalformedResponseError``, never
``done``; a health check that gets one is unhealthy.

Cancelled calls: ``FunctionCall.get()`` raises for a cancelled call, so the result
route answers 500 for it, just as for a call that raised. A 500 for a call that this
adapter was asked to cancel (in this process, or recorded in the ``adapter.*``
events: ``AdapterOptions.known``) is therefore ``cancelled``, not ``failed``.

Retries: ``spawn`` is not idempotent (a second POST spawns a second call), so a submit
is sent once; result and health GETs and cancel (cancelling twice is cancelling once)
are retried.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import msgspec

from schemas.adapter_settings import ModalSettings
from services.runtime.http import HttpReply, ProviderHttp, join_url, segment
from services.runtime.provider_errors import MalformedResponseError
from services.runtime.secrets import Secret

from .artifacts import Collected, collect, save_bytes
from .contract import (
    AdapterBase,
    CancelResult,
    HealthResult,
    PollResult,
    ProviderJob,
    Status,
    SubmitResult,
    find_artifacts,
)
from .errors import InvalidJobError
from .options import AdapterOptions

PROVIDER: Final = "modal"

# Our words for what the result route's status code means; Modal has no job states.
STATUS_MAP: Final[dict[int, tuple[Status, str]]] = {
    200: ("done", "completed"),
    202: ("running", "pending"),  # queued or running: the route does not say which
    500: ("failed", "error"),
}


_TEXT_TYPES: Final = ("text/", "application/xhtml", "application/xml")
_MAX_CANCELLED: Final = 10_000


class _Submitted(msgspec.Struct):
    call_id: str


class ModalAdapter(AdapterBase):
    """Live adapter for one deployed Modal job-queue web app."""

    def __init__(
        self,
        settings: ModalSettings,
        *,
        token_id: Secret,
        token_secret: Secret,
        options: AdapterOptions | None = None,
    ) -> None:
        super().__init__(PROVIDER, dry_run=False)
        options = options or AdapterOptions()
        self._settings = settings
        self._artifacts = options.artifacts
        self._known = options.known
        self._cancelled: dict[str, None] = {}  # insertion-ordered, bounded
        self._http = ProviderHttp.build(
            PROVIDER,
            {"Modal-Key": token_id, "Modal-Secret": token_secret},
            settings.timeout_s,
            options,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _url(self, path: str, call_id: str = "") -> str:
        return join_url(self._settings.base_url, path, segment(call_id) if call_id else "")

    async def _submit(self, job: ProviderJob) -> SubmitResult:
        if job.target is not None:
            raise InvalidJobError(
                PROVIDER, "submit", "a per-job target is not supported; set modal.base_url"
            )
        reply = await self._http.request(
            "submit",
            "POST",
            self._url(self._settings.submit_path),
            json_body=job.input,
            idempotent=False,
            ok_statuses=frozenset({200, 201, 202}),
        )
        found = self._http.decode("submit", reply, _Submitted | str)  # type: ignore[arg-type]
        call_id = found.call_id if isinstance(found, _Submitted) else found
        if not call_id:
            return SubmitResult(
                ok=False,
                provider=PROVIDER,
                dry_run=False,
                reason="empty call id",
                job_id=job.job_id,
            )
        return SubmitResult(
            ok=True,
            provider=PROVIDER,
            dry_run=False,
            id=call_id,
            status="queued",
            raw_status="spawned",
            job_id=job.job_id,
        )

    async def _poll(self, remote_id: str) -> PollResult:
        reply = await self._http.request(
            "poll",
            "GET",
            self._url(self._settings.result_path, remote_id),
            idempotent=True,
            ok_statuses=frozenset(STATUS_MAP),
        )
        status, raw = STATUS_MAP[reply.status]
        cancelled = self._was_cancelled(remote_id)
        output: Any = None
        error = None
        logs: list[str] = []
        saved = []
        if status == "done":
            inline = await asyncio.to_thread(self._result, reply, remote_id)
            output, saved, logs = inline.output, inline.saved, inline.notes
        elif status == "failed" and cancelled:
            status, raw = "cancelled", "cancelled"
        elif status == "failed":
            error = self._http.detail(reply)
        elif cancelled:
            raw = "cancel requested"
        return PollResult(
            provider=PROVIDER,
            id=remote_id,
            dry_run=False,
            status=status,
            raw_status=raw,
            artifacts=find_artifacts(output) + [item.path for item in saved],
            logs=logs,
            output=output,
            error=error,
            saved=saved,
        )

    async def _cancel(self, remote_id: str) -> CancelResult:
        await self._http.request(
            "cancel",
            "POST",
            self._url(self._settings.cancel_path, remote_id),
            idempotent=True,
            ok_statuses=frozenset({200, 202, 204}),
        )
        self._cancelled[remote_id] = None
        while len(self._cancelled) > _MAX_CANCELLED:
            del self._cancelled[next(iter(self._cancelled))]
        # FunctionCall.cancel() stops the call; a poll that still finds a result (the
        # call ended first) reports done.
        return CancelResult(
            ok=True,
            provider=PROVIDER,
            id=remote_id,
            dry_run=False,
            status="cancelled",
            raw_status="cancel requested",
        )

    async def _health(self) -> HealthResult:
        reply = await self._http.request(
            "health",
            "GET",
            self._url(self._settings.health_path),
            idempotent=True,
            ok_statuses=frozenset({200, 204}),
        )
        if reply.status == 200:
            self._json_only("health", reply)
            self._http.decode("health", reply, Any)
        return HealthResult(ok=True, provider=PROVIDER, dry_run=False, state="ready")

    def _was_cancelled(self, remote_id: str) -> bool:
        if remote_id in self._cancelled:
            return True
        record = self._known(PROVIDER, remote_id) if self._known is not None else None
        return record is not None and record.cancel_requested

    def _json_only(self, call: str, reply: HttpReply) -> None:
        if reply.content_type != "application/json":
            raise MalformedResponseError(
                PROVIDER, call,
                f"answered {reply.content_type or 'no content type'}, not the job-queue "
                "app's JSON: is modal.base_url the deployed job-queue app?",
            )  # fmt: skip

    def _result(self, reply: HttpReply, remote_id: str) -> Collected:
        if reply.content_type == "application/json":
            output = self._http.decode("poll", reply, Any)
            return collect(self._artifacts, PROVIDER, remote_id, output)
        if reply.content_type.startswith(_TEXT_TYPES) or not reply.content_type:
            self._json_only("poll", reply)
        found = save_bytes(self._artifacts, PROVIDER, remote_id, reply.body, reply.content_type)
        found.notes.insert(0, f"received {len(reply.body)} bytes of {reply.content_type}")
        return found
