"""A stand-in for the adapters service on a real NATS: ``gpuroute.adapters.submit``,
``poll`` and ``cancel`` with the types of ``schemas/adapters.py``, and jobs whose
``input["behaviour"]`` says how they go:

- ``ok``: ``running`` (progress 0.5, a log line), then ``done`` with a saved file
- ``fail``: ``failed`` with the provider's error
- ``hold``: ``running`` until cancelled
- ``queued``: ``queued`` until cancelled
- ``refuse``: the submit answers ``ok: false`` (as a dry-run without a token does)

``calls`` records every request by subject. The real service in dry-run mode is
exercised in ``test_remote.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from nats.aio.msg import Msg

from schemas.adapters import (
    CANCEL,
    POLL,
    SUBMIT,
    CancelRequest,
    CancelResult,
    PollRequest,
    PollResult,
    SavedArtifact,
    SubmitRequest,
    SubmitResult,
)
from services.runtime.bus import Bus


class AdaptersStandIn:
    def __init__(self, bus: Bus, files: Path) -> None:
        self.bus = bus
        self.files = files
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []

    async def start(self) -> None:
        for subject, handler in ((SUBMIT, self.submit), (POLL, self.poll), (CANCEL, self.cancel)):
            await self.bus.nc.subscribe(subject, cb=handler)
        await self.bus.nc.flush()

    async def submit(self, msg: Msg) -> None:
        req = msgspec.json.decode(msg.data, type=SubmitRequest)
        self.calls.append((SUBMIT, req))
        behaviour = req.job.input.get("behaviour", "ok")
        if behaviour == "refuse":
            reply = SubmitResult(ok=False, provider=req.provider, dry_run=True,
                                 reason="missing token", job_id=req.job.job_id)  # fmt: skip
        else:
            remote_id = f"sim-{len(self.jobs) + 1}"
            self.jobs[remote_id] = {"behaviour": behaviour, "polls": 0, "status": None}
            reply = SubmitResult(ok=True, provider=req.provider, dry_run=False, id=remote_id,
                                 status="queued", job_id=req.job.job_id)  # fmt: skip
        await msg.respond(msgspec.json.encode(reply))

    async def poll(self, msg: Msg) -> None:
        req = msgspec.json.decode(msg.data, type=PollRequest)
        self.calls.append((POLL, req))
        job = self.jobs[req.id]
        job["polls"] += 1
        base: dict[str, Any] = {"provider": req.provider, "id": req.id, "dry_run": False}
        behaviour = job["status"] or job["behaviour"]
        if behaviour == "cancelled":
            reply = PollResult(status="cancelled", artifacts=[], logs=["cancelled"], **base)
        elif behaviour == "queued":
            reply = PollResult(status="queued", artifacts=[], logs=[], **base)
        elif behaviour == "fail":
            reply = PollResult(status="failed", artifacts=[], logs=["loading", "CUDA OOM"],
                               error="CUDA out of memory", **base)  # fmt: skip
        elif behaviour == "hold" or job["polls"] == 1:
            reply = PollResult(status="running", artifacts=[], logs=["loading"], progress=0.5,
                               **base)  # fmt: skip
        else:
            saved = self.files / f"{req.id}.png"
            saved.write_bytes(b"image bytes")
            reply = PollResult(
                status="done", artifacts=["https://cdn.example/out.png", str(saved)],
                logs=["loading", "done"], progress=1.0,
                saved=[SavedArtifact(path=str(saved), size=11, content_type="image/png",
                                     sha256="")], **base,
            )  # fmt: skip
        await msg.respond(msgspec.json.encode(reply))

    async def cancel(self, msg: Msg) -> None:
        req = msgspec.json.decode(msg.data, type=CancelRequest)
        self.calls.append((CANCEL, req))
        self.jobs[req.id]["status"] = "cancelled"
        await msg.respond(msgspec.json.encode(CancelResult(
            ok=True, provider=req.provider, id=req.id, dry_run=False, status="cancelled"
        )))  # fmt: skip

    def cancelled(self) -> list[str]:
        return [req.id for subject, req in self.calls if subject == CANCEL]
