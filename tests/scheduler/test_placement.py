"""A job advised ``wait`` waits (``job.delayed`` code ``wait``) until a new
decision places it; ``infeasible`` never runs; a failed remote attempt is
rerouted to the next provider the advisor honours. Real NATS, store, advisor."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import make_event
from schemas import scheduler as s
from schemas.advisor import FLAGS_SET_SUBJECT, FlagsView
from schemas.jobs import JobSpec
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.scheduler.executors.base import Executor, Outcome, Progress, Run
from services.scheduler.placement import ADAPTER_OF_KIND
from services.scheduler.service import SchedulerService
from tests.advisor.factories import gpu, sample
from tests.advisor.service_support import running_advisor, stored_events
from tests.support import watch_stored

from .support import Client, Quick, running_scheduler

BIG = {"kind": "image", "width": 1024, "height": 1024}  # too big for the CPU: waits
NEVER = {**BIG, "vram_gb": 1000}  # above every GPU and every offer: infeasible


async def gpu_frees(config: Config, bus: Bus, advisor: Any) -> None:
    """A telemetry sample with a GPU of 20 GiB free, once the advisor folded it."""
    node = config.telemetry.node_id()
    free = sample(gpu(free_mib=20 * 1024), sample_id=bus.ids.new())
    free = msgspec.structs.replace(free, node=node, ts=bus.clock.now())
    async with watch_stored(bus) as stored:
        await bus.publish(make_event(free, id=free.sample_id, key=node, ts=free.ts,
                                     source="telemetry"))  # fmt: skip
        await stored.folded(advisor.follower, where=lambda e: e.id == free.sample_id)
    assert advisor.state.telemetry is not None
    assert advisor.state.telemetry.sample_id == free.sample_id


async def test_a_job_advised_wait_is_delayed_until_a_new_decision_places_it(
    config: Config, store: Any, bus: Bus
) -> None:
    quick = Quick()
    async with running_advisor(config) as advisor, running_scheduler(config, quick) as sched:
        client = Client(bus, sched.follower)
        async with watch_stored(bus) as stored:
            accepted = await client.submit(**BIG)
            mine = lambda e: e.key == accepted.job_id  # noqa: E731
            await stored.folded(sched.follower, "job.delayed", where=mine)
        assert accepted.decision is not None and accepted.decision.target == "wait"
        assert accepted.state == "delayed"
        view = await client.get(accepted.job_id)
        assert view.state == "delayed", view
        assert view.budget is not None
        assert view.budget.code == "wait" and "Waiting for the local GPU" in view.budget.reason
        assert quick.runs == []  # before: it ran at once
        # a GPU with room appears: the re-advice (timer) places the job there
        await gpu_frees(config, bus, advisor)
        view = await client.ended(accepted.job_id)
        assert view.state == "succeeded", view
        assert view.history == ["job.submitted", "job.advised", "job.delayed", "job.rerouted",
                                "job.queued", "job.started", "job.succeeded"]  # fmt: skip
        assert view.decision is not None and view.decision.target == "local"
        assert view.decision.rule == "local_gpu" and view.reroutes == 1
        [(_, moved)] = stored_events(config.events_db, "job.rerouted")
        assert moved.payload.from_target == "wait" and moved.payload.to_target == "local"
        assert len(quick.runs) == 1


async def test_an_infeasible_job_fails_with_its_reason_and_never_runs(
    config: Config, store: Any, bus: Bus
) -> None:
    quick = Quick()
    async with running_advisor(config), running_scheduler(config, quick) as sched:
        client = Client(bus, sched.follower)
        accepted = await client.submit(**NEVER)
        view = await client.ended(accepted.job_id)  # "infeasible" once advised, then failed
        assert view.state == "failed" and view.error_code == "infeasible", view
        assert view.error is not None and "no target can ever run this job" in view.error
        assert view.history == ["job.submitted", "job.advised", "job.failed"]
        assert quick.runs == []


class FailsAtFirst(Executor):
    """A ``remote`` stand-in: the first provider it is given fails (retryable, as a
    provider timeout is); any other succeeds."""

    name = "remote"

    def __init__(self) -> None:
        self.providers: list[str | None] = []

    async def run(self, run: Run, progress: Progress) -> Outcome:
        self.providers.append(run.provider)
        if len(self.providers) == 1:
            return Outcome("failed", f"{run.provider} job x ended timed_out", retryable=True,
                           provider=run.provider)  # fmt: skip
        return Outcome("succeeded", provider=run.provider, dry_run=True)


async def test_a_failed_remote_attempt_is_rerouted_to_the_next_provider(
    config: Config, store: Any, bus: Bus
) -> None:
    remote = FailsAtFirst()
    async with running_advisor(config), \
            running_scheduler(config, executors={"remote": remote}) as sched:  # fmt: skip
        flags = {"flags": {"features.enable_compute": True}}
        await bus.call(FLAGS_SET_SUBJECT, flags, FlagsView)
        client = Client(bus, sched.follower)
        accepted = await client.submit(**BIG, executor="remote", max_attempts=3,
                                       payload={"input": {"prompt": "a fox"}})  # fmt: skip
        first = accepted.decision
        assert first is not None and first.target == "remote" and first.provider is not None
        view = await client.ended(accepted.job_id)
        assert view.state == "succeeded", view
        assert view.history == ["job.submitted", "job.advised", "job.queued", "job.started",
                                "job.rerouted", "job.retried", "job.started",
                                "job.succeeded"]  # fmt: skip
        [(_, moved)] = stored_events(config.events_db, "job.rerouted")
        assert moved.payload.from_provider == first.provider
        assert moved.payload.to_provider not in (None, first.provider)
        assert "timed_out" in moved.payload.reason
        assert view.decision is not None and view.decision.provider == moved.payload.to_provider
        assert view.reroutes == 1 and view.attempts == 2
        # each attempt ran at the adapter of its provider, not the registry's id
        assert remote.providers[0] in ADAPTER_OF_KIND.values()
        assert remote.providers[1] in ADAPTER_OF_KIND.values()


async def test_waiting_jobs_of_one_shape_share_one_advise_per_tick(
    config: Config, store: Any, bus: Bus
) -> None:
    shapes = [BIG, {**BIG, "steps": 30}]
    async with running_advisor(config) as advisor, running_scheduler(config) as scheduler:
        client = Client(bus, scheduler.follower)
        accepted = [await client.submit(**shapes[i % 2]) for i in range(7)]
        assert all(a.state == "delayed" for a in accepted)
        await gpu_frees(config, bus, advisor)
        before = scheduler.placement.asks
        scheduler.wake_waiting()  # as a job ending anywhere does
        views = [await client.ended(a.job_id) for a in accepted]
        # each shape asked once after the GPU freed (none: a tick in flight placed it)
        assert scheduler.placement.asks - before <= len(shapes)
        for i, view in enumerate(views):
            assert view.state == "succeeded" and view.reroutes == 1, view
            alone = await scheduler.placement.advise(JobSpec(**shapes[i % 2]))
            assert view.decision is not None  # the decision each would have got alone
            assert (view.decision.target, view.decision.rule) == (alone.target, alone.rule)


class AlwaysFails(Executor):
    """A ``remote`` stand-in whose every provider times out (retryable)."""

    name = "remote"

    def __init__(self) -> None:
        self.providers: list[str | None] = []

    async def run(self, run: Run, progress: Progress) -> Outcome:
        self.providers.append(run.provider)
        return Outcome("failed", f"{run.provider} job x ended timed_out", retryable=True,
                       provider=run.provider)  # fmt: skip


async def remote_job(bus: Bus, sched: SchedulerService, max_attempts: int) -> s.JobView:
    await bus.call(FLAGS_SET_SUBJECT, {"flags": {"features.enable_compute": True}}, FlagsView)
    client = Client(bus, sched.follower)
    accepted = await client.submit(**BIG, executor="remote", max_attempts=max_attempts,
                                   payload={"input": {"prompt": "a fox"}})  # fmt: skip
    return await client.ended(accepted.job_id)


async def test_a_reroute_does_not_spend_an_attempt(config: Config, store: Any, bus: Bus) -> None:
    remote = FailsAtFirst()
    async with running_advisor(config), \
            running_scheduler(config, executors={"remote": remote}) as sched:  # fmt: skip
        view = await remote_job(bus, sched, max_attempts=1)
    # one attempt allowed: the provider's failure moved the job, the second provider ran it
    assert view.state == "succeeded", view
    assert (view.attempts, view.max_attempts, view.reroutes) == (2, 1, 1)
    assert view.history[-4:] == ["job.rerouted", "job.retried", "job.started", "job.succeeded"]


async def test_attempts_are_kept_for_failures_no_provider_can_help(
    config: Config, store: Any, bus: Bus
) -> None:
    remote = AlwaysFails()
    async with running_advisor(config), \
            running_scheduler(config, executors={"remote": remote}) as sched:  # fmt: skip
        view = await remote_job(bus, sched, max_attempts=2)
    # every other provider is tried once for free; then both attempts are spent
    # where no provider is left: the last one is retried once with backoff
    assert view.state == "failed", view
    started = [e.payload.provider for _, e in stored_events(config.events_db, "job.started")]
    assert view.reroutes >= 1 and len(set(started)) == view.reroutes + 1
    assert len(started) == len(remote.providers) == view.reroutes + 2 == view.attempts
    assert started[-1] == started[-2]
    assert view.error is not None
    assert f"(2 of 2 attempts spent, {view.reroutes} rerouted to another provider)" in view.error
