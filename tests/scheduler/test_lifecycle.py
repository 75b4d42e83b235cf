"""The scheduler's lifecycle against a real nats-server, store and advisor."""

from __future__ import annotations

import base64
import json
from typing import Any

from schemas import scheduler as s
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.errors import ServiceCallError
from tests.advisor.service_support import running_advisor, stored_events

from .support import Client, Quick, running_scheduler


async def test_a_job_runs_to_success_with_every_lifecycle_event(
    config: Config, store: Any, bus: Bus
) -> None:
    async with running_advisor(config), running_scheduler(config) as sched:
        client = Client(bus, sched.follower)
        accepted = await client.submit(kind="image", width=512, height=512,
                                       payload={"text": "hello"})  # fmt: skip
        assert accepted.created and accepted.decision is not None
        assert accepted.budget is not None and accepted.budget.state == "off"
        view = await client.ended(accepted.job_id)
        assert view.state == "succeeded", view
        assert view.history == ["job.submitted", "job.advised", "job.queued", "job.started",
                                "job.succeeded"]  # fmt: skip
        assert view.attempts == 1 and view.progress == 1.0 and view.artifacts == ["out.txt"]
        art = await bus.call(s.ARTIFACT, {"id": view.job_id, "name": "out.txt"}, s.ArtifactBody)
        assert base64.b64decode(art.data) == b"hello"
        side = await bus.call(s.ARTIFACT, {"id": view.job_id, "name": "out.txt.json"},
                              s.ArtifactBody)  # fmt: skip
        sidecar = json.loads(base64.b64decode(side.data))
        assert sidecar["job_id"] == view.job_id and sidecar["executor"] == "synthetic"
        assert sidecar["decision_rule"] == accepted.decision.rule and sidecar["seed"] >= 0
        assert len(sidecar["payload_sha256"]) == 64 and sidecar["spec"]["width"] == 512


async def test_idempotency_key_answers_the_same_job(config: Config, store: Any, bus: Bus) -> None:
    async with running_advisor(config), running_scheduler(config) as sched:
        client = Client(bus, sched.follower)
        first = await client.submit(idempotency_key="render-42")
        again = await client.submit(idempotency_key="render-42")
        assert first.created and not again.created and again.job_id == first.job_id
        await client.ended(first.job_id)
        assert len([e for _, e in stored_events(config.events_db, "job.submitted")
                    if e.key == first.job_id]) == 1  # fmt: skip


async def test_retryable_failures_back_off_then_succeed_or_fail(
    config: Config, store: Any, bus: Bus
) -> None:
    async with running_advisor(config), running_scheduler(config) as sched:
        client = Client(bus, sched.follower)
        flaky = await client.submit(payload={"fail": "503", "retryable": True, "times": 2},
                                    max_attempts=3)  # fmt: skip
        view = await client.ended(flaky.job_id)
        assert view.state == "succeeded" and view.attempts == 3
        assert view.history.count("job.retried") == 2
        hopeless = await client.submit(payload={"fail": "bad node", "retryable": False},
                                       max_attempts=3)  # fmt: skip
        view = await client.ended(hopeless.job_id)
        assert view.state == "failed" and view.attempts == 1 and view.error == "bad node"
        spent = await client.submit(payload={"fail": "flaky", "retryable": True},
                                    max_attempts=2)  # fmt: skip
        view = await client.ended(spent.job_id)
        assert view.state == "failed" and view.error == "flaky (attempt 2 of 2)"


async def test_cancel_stops_the_running_attempt(config: Config, store: Any, bus: Bus) -> None:
    quick = Quick()
    async with running_advisor(config), running_scheduler(config, quick) as sched:
        client = Client(bus, sched.follower)
        job = await client.submit(payload={"hold": True})
        from tests.support import poll

        await poll(lambda: quick.runs)  # the executor's own list: no event says it ran
        view = await client.cancel(job.job_id)
        assert view.state == "cancelled"
        await poll(lambda: quick.cancelled == [job.job_id])  # the executor's list, as above
        try:
            await client.cancel(job.job_id)
            raise AssertionError("a second cancel must be refused")
        except ServiceCallError as e:
            assert e.code == 409 and "already ended" in e.description


async def test_bad_requests_are_400_naming_the_field(config: Config, store: Any, bus: Bus) -> None:
    async with running_scheduler(config):
        for body, words in (({"executor": "comfyui"}, "not available"),
                            ({"width": 0}, "$.width"), ({"colour": 1}, "colour"),
                            ({"max_attempts": 0}, "max_attempts")):  # fmt: skip
            try:
                await Client(bus).submit(**body)
                raise AssertionError(f"{body} was accepted")
            except ServiceCallError as e:
                assert e.code == 400 and words in e.description, e.description
