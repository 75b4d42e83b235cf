"""Modal adapter against a fake of the documented job-queue web app behind proxy auth."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from services.adapters.artifacts import ArtifactStore
from services.adapters.contract import ProviderJob
from services.adapters.modal import ModalAdapter, ModalSettings
from services.adapters.options import AdapterOptions
from services.adapters.tracking import JobRecord
from services.runtime.provider_errors import (
    AuthError,
    MalformedResponseError,
    NotFoundError,
    ProviderUnavailableError,
)
from services.runtime.secrets import Secret
from tests.adapters.adapter_fakes import MODAL_ID, MODAL_SECRET, Fake, Scripted
from tests.adapters.conftest import SleepRecorder

JOB = ProviderJob(input={"prompt": "a castle", "steps": 4}, job_id="j9")


async def test_submit_spawns_with_proxy_auth_headers(modal: ModalAdapter, fake: Fake) -> None:
    result = await modal.submit(JOB)
    assert (result.ok, result.id, result.status) == (True, "fc-1", "queued")
    seen = fake.requests[-1]
    assert (seen.method, seen.path, seen.body) == ("POST", "/submit", JOB.input)
    assert (seen.headers["Modal-Key"], seen.headers["Modal-Secret"]) == (MODAL_ID, MODAL_SECRET)
    assert "Authorization" not in seen.headers


async def test_a_bare_call_id_string_is_accepted(modal: ModalAdapter, fake: Fake) -> None:
    fake.extra["bare_id"] = True
    assert (await modal.submit(JOB)).id == "fc-1"


async def test_202_means_pending_then_200_is_the_result(modal: ModalAdapter, fake: Fake) -> None:
    fake.extra["pending_polls"] = 2
    submitted = await modal.submit(JOB)
    assert submitted.id is not None
    polls = [await modal.poll(submitted.id) for _ in range(3)]
    assert [(p.status, p.raw_status) for p in polls] == [
        ("running", "pending"),
        ("running", "pending"),
        ("done", "completed"),
    ]
    assert polls[-1].output == {"images": ["https://modal.example/out.png"], "ok": True}
    assert polls[-1].artifacts == ["https://modal.example/out.png"]
    assert fake.requests[-1].path == "/result/fc-1"


async def test_a_call_that_raised_is_failed(modal: ModalAdapter, fake: Fake) -> None:
    fake.extra.update(fail=True, pending_polls=0)
    submitted = await modal.submit(JOB)
    assert submitted.id is not None
    polled = await modal.poll(submitted.id)
    assert (polled.status, polled.error) == ("failed", "Internal Server Error")


async def test_cancel_and_health(modal: ModalAdapter, fake: Fake) -> None:
    submitted = await modal.submit(JOB)
    assert submitted.id is not None
    cancelled = await modal.cancel(submitted.id)
    assert (cancelled.ok, cancelled.status, cancelled.raw_status) == (
        True,
        "cancelled",
        "cancel requested",
    )
    assert fake.jobs[submitted.id]["cancelled"] is True
    assert (await modal.health()).state == "ready"


async def test_a_cancelled_call_ends_cancelled_not_failed(modal: ModalAdapter, fake: Fake) -> None:
    """Issue 8: get() of a cancelled call raises, so the app answers 500 for it."""
    submitted = await modal.submit(JOB)
    assert submitted.id is not None
    await modal.cancel(submitted.id)
    polled = await modal.poll(submitted.id)
    assert (polled.status, polled.raw_status, polled.error) == ("cancelled", "cancelled", None)


async def test_a_cancel_recorded_by_another_instance_counts(
    modal_settings: ModalSettings, http_options: AdapterOptions, fake: Fake
) -> None:
    """After a restart the cancel is known from the adapter.* events (``known``)."""
    cancelled = {("modal", "fc-1")}
    options = dataclasses.replace(
        http_options,
        known=lambda p, rid: JobRecord(p, rid, dry_run=False, status="cancelled",
                                       cancel_requested=True) if (p, rid) in cancelled else None,
    )  # fmt: skip
    adapter = ModalAdapter(modal_settings, token_id=Secret(MODAL_ID),
                           token_secret=Secret(MODAL_SECRET), options=options)  # fmt: skip
    try:
        submitted = await adapter.submit(JOB)
        fake.jobs["fc-1"]["cancelled"] = True
        assert submitted.id == "fc-1"
        assert (await adapter.poll("fc-1")).status == "cancelled"
    finally:
        await adapter.aclose()


def _file(path: str) -> tuple[bytes, int]:
    return Path(path).read_bytes(), Path(path).stat().st_mode & 0o777


HTML = "<!doctype html><html><body>Welcome to nginx!</body></html>"


async def test_a_base_url_that_answers_html_is_unhealthy_and_never_done(
    modal: ModalAdapter, fake: Fake
) -> None:
    """Issue 8: a web page for every path is not the job-queue app."""
    fake.plan("health", Scripted(200, HTML, raw=True, content_type="text/html"))
    with pytest.raises(MalformedResponseError, match="modal health: answered text/html"):
        await modal.health()
    fake.plan("result", Scripted(200, HTML, raw=True, content_type="text/html"))
    with pytest.raises(MalformedResponseError, match=r"is modal\.base_url the deployed"):
        await modal.poll("fc-1")
    fake.plan("health", Scripted(200, "<html>", raw=True))  # labelled JSON, is not
    with pytest.raises(MalformedResponseError, match="modal health: unexpected response"):
        await modal.health()


async def test_a_binary_result_is_saved_as_an_artifact(
    modal_settings: ModalSettings, http_options: AdapterOptions, fake: Fake, tmp_path: Path
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    options = dataclasses.replace(http_options, artifacts=ArtifactStore(tmp_path, 1024))
    adapter = ModalAdapter(modal_settings, token_id=Secret(MODAL_ID),
                           token_secret=Secret(MODAL_SECRET), options=options)  # fmt: skip
    try:
        fake.plan("result", Scripted(200, png, raw=True, content_type="image/png"))
        polled = await adapter.poll("fc-9")
    finally:
        await adapter.aclose()
    [saved] = polled.saved
    assert polled.status == "done" and polled.artifacts == [saved.path]
    assert saved.path == str(tmp_path / "modal" / "fc-9" / "output.png")
    assert (saved.size, saved.content_type) == (108, "image/png")
    assert saved.sha256 == hashlib.sha256(png).hexdigest()
    assert _file(saved.path) == (png, 0o600)
    assert polled.output == {"content_type": "image/png", "bytes": 108, "path": saved.path}


async def test_missing_proxy_credentials_are_an_auth_error(
    modal_settings: ModalSettings, http_options: AdapterOptions
) -> None:
    adapter = ModalAdapter(
        modal_settings,
        token_id=Secret(MODAL_ID),
        token_secret=Secret("ws-wrong"),
        options=http_options,
    )
    try:
        with pytest.raises(AuthError) as caught:
            await adapter.submit(JOB)
    finally:
        await adapter.aclose()
    expected = "modal submit: HTTP 401: modal-http: invalid credentials for proxy authorization"
    assert str(caught.value) == expected


async def test_submit_is_not_retried_on_503(
    modal: ModalAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    fake.plan("submit", Scripted(503, "no capacity", raw=True))
    with pytest.raises(ProviderUnavailableError):
        await modal.submit(JOB)
    assert fake.count("POST /submit") == 1 and sleeps.delays == []


async def test_result_is_retried_on_504(
    modal: ModalAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    submitted = await modal.submit(JOB)
    assert submitted.id is not None
    fake.plan("result", Scripted(504, "gateway timeout", raw=True))
    assert (await modal.poll(submitted.id)).status == "running"
    assert len(sleeps.delays) == 1


async def test_unknown_call_id(modal: ModalAdapter) -> None:
    with pytest.raises(NotFoundError, match="modal poll: HTTP 404: Not Found"):
        await modal.poll("fc-missing")


async def test_a_submit_answer_without_call_id_is_malformed(
    modal: ModalAdapter, fake: Fake
) -> None:
    fake.plan("submit", Scripted(200, {"id": "fc-1"}))
    with pytest.raises(MalformedResponseError, match="modal submit: unexpected response body"):
        await modal.submit(JOB)


def test_settings_need_the_deployed_url() -> None:
    assert ModalSettings().missing() == ["modal.base_url"]
