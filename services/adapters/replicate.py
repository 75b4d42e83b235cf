"""Replicate predictions adapter.

Follows:
- replicate-python ``replicate/client.py`` (base URL ``https://api.replicate.com``,
  ``Authorization: Bearer <token>``, its ``RetryTransport``: 429/503/504 with
  ``Retry-After``, POST never retried), ``replicate/prediction.py`` (``Prediction``
  fields ``id``, ``status``, ``output``, ``logs``, ``error``, ``urls``; ``create``
  for version / model / deployment; ``cancel`` = ``POST /v1/predictions/{id}/cancel``;
  the ``Progress`` pattern read from the logs), ``replicate/deployment.py``
  (``/v1/deployments/{owner}/{name}/predictions``), ``replicate/account.py``
  (``GET /v1/account``), ``replicate/exceptions.py`` (errors are RFC 7807 problem
  details: ``title``, ``detail``, ``status``);
- Replicate docs "Prediction lifecycle": statuses ``starting``, ``processing``,
  ``succeeded``, ``failed``, ``canceled``, ``aborted`` ("exceeded its deadline
  before it could start running", hence ``timed_out``).

Retries: creating a prediction is not idempotent (the API takes no idempotency key),
so a submit is retried only on 429 (throttled: refused before a prediction was made);
GETs and cancel (idempotent: a cancelled prediction stays cancelled) are retried on
every retryable failure.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Final

import msgspec

from schemas.adapter_settings import ReplicateSettings
from services.runtime.http import ProviderHttp, join_url, segment
from services.runtime.secrets import Secret

from .artifacts import collect
from .contract import (
    AdapterBase,
    CancelResult,
    HealthResult,
    PollResult,
    ProviderJob,
    Status,
    SubmitResult,
    find_artifacts,
    map_status,
)
from .errors import InvalidJobError
from .options import AdapterOptions

PROVIDER: Final = "replicate"

STATUS_MAP: Final[dict[str, Status]] = {
    "starting": "starting",
    "processing": "running",
    "succeeded": "done",
    "failed": "failed",
    "canceled": "cancelled",
    "aborted": "timed_out",
}

_PROGRESS = re.compile(r"^\s*(?P<percentage>\d{1,3})%\s*\|.+?\|\s*(?P<current>\d+)/(?P<total>\d+)")
_MAX_LOG_LINES: Final = 200


class _Prediction(msgspec.Struct):
    id: str
    status: str
    output: Any = None
    logs: str | None = None
    error: Any = None
    urls: dict[str, str] | None = None


class _Account(msgspec.Struct):
    type: str
    username: str


class ReplicateAdapter(AdapterBase):
    """Live Replicate adapter."""

    def __init__(
        self,
        settings: ReplicateSettings,
        *,
        api_token: Secret,
        options: AdapterOptions | None = None,
    ) -> None:
        super().__init__(PROVIDER, dry_run=False)
        self._settings = settings
        self._artifacts = (options or AdapterOptions()).artifacts
        self._base = settings.base_url
        self._http = ProviderHttp.build(
            PROVIDER,
            {"Authorization": Secret(f"Bearer {api_token.reveal()}")},
            settings.timeout_s,
            options or AdapterOptions(),
            redact=[api_token],
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _submit(self, job: ProviderJob) -> SubmitResult:
        path, body = self._route(job)
        reply = await self._http.request(
            "submit", "POST", join_url(self._base, path), json_body=body, idempotent=False
        )
        found = self._http.decode("submit", reply, _Prediction)
        return SubmitResult(
            ok=True,
            provider=PROVIDER,
            dry_run=False,
            id=found.id,
            status=map_status(STATUS_MAP, found.status),
            raw_status=found.status,
            job_id=job.job_id,
        )

    async def _poll(self, remote_id: str) -> PollResult:
        url = join_url(self._base, "v1/predictions", segment(remote_id))
        reply = await self._http.request("poll", "GET", url, idempotent=True)
        found = self._http.decode("poll", reply, _Prediction)
        logs = self._http.redact(found.logs or "").splitlines()
        inline = await asyncio.to_thread(
            collect, self._artifacts, PROVIDER, remote_id, found.output
        )
        return PollResult(
            provider=PROVIDER,
            id=found.id,
            dry_run=False,
            status=map_status(STATUS_MAP, found.status),
            raw_status=found.status,
            artifacts=find_artifacts(inline.output) + inline.paths,
            logs=logs[-_MAX_LOG_LINES:] + inline.notes,
            output=inline.output,
            error=self._error_text(found.error),
            progress=_progress(logs),
            saved=inline.saved,
        )

    async def _cancel(self, remote_id: str) -> CancelResult:
        url = join_url(self._base, "v1/predictions", segment(remote_id), "cancel")
        reply = await self._http.request("cancel", "POST", url, idempotent=True)
        found = self._http.decode("cancel", reply, _Prediction)
        status = map_status(STATUS_MAP, found.status)
        return CancelResult(
            ok=True,
            provider=PROVIDER,
            id=found.id,
            dry_run=False,
            status=status,
            raw_status=found.status,
        )

    async def _health(self) -> HealthResult:
        """Replicate has no status route; an authenticated ``GET /v1/account`` proves
        the API answers and the token is good."""
        reply = await self._http.request(
            "health", "GET", join_url(self._base, "v1/account"), idempotent=True
        )
        found = self._http.decode("health", reply, _Account)
        return HealthResult(
            ok=True, provider=PROVIDER, dry_run=False, state="ready", raw_state=found.type
        )

    def _route(self, job: ProviderJob) -> tuple[str, dict[str, Any]]:
        """The create-prediction path and body for ``job`` (see ``Predictions.create``)."""
        body: dict[str, Any] = {"input": job.input}
        settings = self._settings
        model, version, deployment = settings.model, settings.version, settings.deployment
        if job.target is not None:
            model, version, deployment = _parse_target(job.target)
        if deployment:
            owner, name = _owner_name(deployment, "deployment")
            return f"v1/deployments/{owner}/{name}/predictions", body
        if version:
            return "v1/predictions", {"version": version, **body}
        if model:
            owner, name = _owner_name(model, "model")
            return f"v1/models/{owner}/{name}/predictions", body
        raise InvalidJobError(PROVIDER, "submit", "no model, version or deployment to run")

    def _error_text(self, error: object) -> str | None:
        if error is None or error == "":
            return None
        text = error if isinstance(error, str) else json.dumps(error, sort_keys=True)
        return self._http.redact(text)


def _parse_target(target: str) -> tuple[str, str, str]:
    """``owner/name`` -> model; ``owner/name:version`` -> version (model, version, deployment)."""
    ref, _, version = target.partition(":")
    _owner_name(ref, "target")
    return (ref, version, "") if not version else ("", version, "")


def _owner_name(ref: str, what: str) -> tuple[str, str]:
    owner, sep, name = ref.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise InvalidJobError(PROVIDER, "submit", f"{what} must read owner/name, got {ref!r}")
    return segment(owner), segment(name)


def _progress(lines: list[str]) -> float | None:
    """Fraction done from the last tqdm-style line (``45%|####   | 9/20``), if any."""
    for line in reversed(lines):
        match = _PROGRESS.match(line.strip())
        if match:
            return min(int(match.group("percentage")), 100) / 100.0
    return None
