"""The advisor service against a real nats-server and store: job.submitted ->
job.advised with its inputs, redelivery, seeding, restarts."""

from __future__ import annotations

import uuid

import msgspec
import nats.js.errors
import pytest

from schemas import Event, make_event
from schemas.advisor import AdvisedInputs, JobAdvised, QueueDepthChanged
from schemas.flags import DEFAULTS, FlagsChanged
from schemas.jobs import JobSpec, JobSubmitted
from schemas.subjects import STORE_STATS, STREAM
from schemas.system import StoreStats
from services.advisor.config import DEFAULT_CONFIG, config_digest
from services.advisor.jobs import CONSUMER, advised_id
from services.advisor.service import seed_id
from services.runtime.bus import Bus
from tests.advisor.service_support import (
    NO_GPU,
    ONE_GPU,
    advised,
    running_advisor,
    stored_events,
)
from tests.support import poll

pytestmark = pytest.mark.usefixtures("store")


def submit(bus: Bus, job_id: str, **spec: object) -> Event:
    return bus.event(JobSubmitted(spec=JobSpec(**spec)), key=job_id)  # type: ignore[arg-type]


async def test_job_submitted_is_advised_with_the_inputs_it_used(bus, config, stored):
    async with running_advisor(config, ONE_GPU):
        job = submit(bus, "job-1", width=1024, height=1024)
        await bus.publish(job)
        event = (await advised(stored, ["job-1"]))["job-1"]
    assert event.id == advised_id(job.id) and event.causation_id == job.id
    assert event.correlation_id == job.id and event.source == "advisor"
    data = event.payload
    assert isinstance(data, JobAdvised)
    assert (data.target, data.rule, data.provider) == ("local", "local_gpu", None)
    assert "GPU 0 (NVIDIA GeForce RTX 4090) has 21.47 GB free" in data.reason
    inputs = data.replayable
    assert isinstance(inputs, AdvisedInputs) and inputs.decision is not None
    [(_, sample)] = stored_events(config.events_db, "telemetry.sampled")
    assert inputs.telemetry_sample_id == sample.id == sample.payload.sample_id
    assert inputs.flags == DEFAULTS
    assert (inputs.registry_version, inputs.remote_queue_depth) == (6, 0)
    assert inputs.config_digest == config_digest(DEFAULT_CONFIG)
    assert inputs.spec.width == 1024 and inputs.decision.target == "local"
    assert inputs.decision.details is None
    seqs = {e.id: seq for seq, e in stored_events(config.events_db)}
    assert 0 < inputs.state_position < seqs[event.id]


async def test_flags_and_queue_depth_reach_decisions_as_events(bus, config, stored):
    big = {"width": 1024, "height": 1024, "batch": 2}
    async with running_advisor(config, NO_GPU) as advisor:
        await bus.publish(submit(bus, "off", **big))
        await advised(stored, ["off"])
        flags = bus.event(FlagsChanged(flags={"features.enable_compute": True}), key="flags")
        assert await advisor.follower.publish_and_wait([flags], 10)
        await bus.publish(submit(bus, "on", **big))
        await advised(stored, ["on"])
        depth = bus.event(QueueDepthChanged(depth=9), key="remote")
        assert await advisor.follower.publish_and_wait([depth], 10)
        await bus.publish(submit(bus, "full", **big))
        got = await advised(stored, ["off", "on", "full"])
    off, on, full = (got[k].payload for k in ("off", "on", "full"))
    assert off.target == "wait" and "features.enable_compute is off" in off.reason
    assert on.target == "remote" and on.provider and on.estimate_usd > 0
    assert full.target == "wait" and "queue saturated: depth 9 >= 8" in full.reason
    assert full.inputs.remote_queue_depth == 9


async def test_a_redelivered_job_is_advised_once(bus, config, stored):
    async with running_advisor(config):
        job = submit(bus, "job-r", width=512, height=512)
        await bus.publish(job)
        await advised(stored, ["job-r"])
    # a fresh consumer delivers every job.submitted again, as a lost ack would
    await bus.js.delete_consumer(STREAM, CONSUMER)
    async with running_advisor(config):

        async def redelivered_and_acked() -> bool:
            try:
                info = await bus.js.consumer_info(STREAM, CONSUMER)
            except nats.js.errors.NotFoundError:
                return False  # not subscribed yet
            return info.delivered.stream_seq > 0 and info.num_ack_pending == 0

        await poll(redelivered_and_acked)

        async def store_caught_up() -> bool:  # a duplicate that got in would be stored by now
            last = (await bus.js.stream_info(STREAM)).state.last_seq
            stats = await bus.call(STORE_STATS, {}, StoreStats)
            return bool(stats.stream_seq == last)

        await poll(store_caught_up)
    answers = [e for _, e in stored_events(config.events_db, "job.advised")]
    assert [e.id for e in answers] == [advised_id(job.id)]
    advised_uuid, job_uuid = uuid.UUID(answers[0].id), uuid.UUID(job.id)
    assert advised_uuid.version == 7 and advised_uuid.int >> 80 == job_uuid.int >> 80


async def test_an_invalid_submitted_event_is_acked_unanswered(bus, config, stored):
    """The store dead-letters these; an answer would be a phantom job in the log."""
    good = msgspec.to_builtins(submit(bus, "valid", width=64, height=64))
    bodies = {
        "bad-spec": {**good, "id": "i-1", "key": "bad-spec", "data": {"spec": "x"}},
        "no-key": {k: v for k, v in {**good, "id": "i-2"}.items() if k != "key"},
        "wrong-type": {
            **good, "id": "i-3", "key": "wrong-type", "type": "provider.removed",
            "data": {"id": "x"},
        },
    }  # fmt: skip
    async with running_advisor(config) as advisor:
        for i, body in enumerate([*bodies.values(), b"not json"]):
            raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
            await bus.js.publish("job.submitted", raw, headers={"Nats-Msg-Id": f"bad-{i}"})
        await bus.js.publish("job.submitted", msgspec.json.encode(good))
        await advised(stored, ["valid"])
        await poll(lambda: advisor.jobs.invalid == 4)

        async def dead_letters() -> int:
            return (await bus.call(STORE_STATS, {}, StoreStats)).dead_letters

        assert await poll(lambda: dead_letters()) == 4
        info = await bus.js.consumer_info(STREAM, CONSUMER)
        assert info.num_ack_pending == 0 and info.num_redelivered == 0
    answers = [e.key for _, e in stored_events(config.events_db, "job.advised")]
    assert answers == ["valid"]


async def test_a_spec_over_the_bounds_is_a_dead_letter_not_a_job(bus, config, stored):
    """JobSpec is one type, bounded, in the event too: the store dead-letters a
    job.submitted whose spec breaks a bound and the advisor, running the same
    check, counts it and answers nothing (it used to decode the spec a third time
    and answer ``rejected``)."""
    async with running_advisor(config) as advisor:
        await bus.publish(submit(bus, "huge", width=100_000, height=64))
        await bus.publish(submit(bus, "fine", width=64, height=64))
        await advised(stored, ["fine"])
        await poll(lambda: advisor.jobs.invalid == 1)

        async def dead_letters() -> int:
            return (await bus.call(STORE_STATS, {}, StoreStats)).dead_letters

        assert await poll(lambda: dead_letters()) == 1
    assert [e.key for _, e in stored_events(config.events_db, "job.advised")] == ["fine"]


async def test_seeding_happens_once_with_deterministic_ids(bus, config):
    async with running_advisor(config) as advisor:
        assert advisor.state.registry.seeded and len(advisor.state.registry.providers) == 6
    async with running_advisor(config) as again:
        assert again.state.registry.version == 6
    upserts = [e for _, e in stored_events(config.events_db, "provider.upserted")]
    assert sorted(e.id for e in upserts) == sorted(
        seed_id(p) for p in again.state.registry.providers
    )
    assert all(uuid.UUID(e.id).version == 7 for e in upserts)


async def test_tokens_and_audio_survive_the_submitted_event(bus, config, stored):
    """One JobSpec: the event's spec carries ``tokens`` and ``audio_seconds``."""
    async with running_advisor(config):
        await bus.publish(submit(bus, "llm-1", kind="llm", model="llama-3-8b", tokens=4000))
        await bus.publish(submit(bus, "asr-1", kind="speech", audio_seconds=90.5))
        got = await advised(stored, ["llm-1", "asr-1"])
    assert got["llm-1"].payload.inputs.spec.tokens == 4000
    assert got["asr-1"].payload.inputs.spec.audio_seconds == 90.5


async def test_a_deeply_nested_submitted_event_does_not_stop_the_consumer(bus, config, stored):
    """~1,000 levels of nesting made msgspec raise RecursionError, which killed the
    job consumer for good: every later job went unanswered."""
    deep = b"[" * 1000 + b"]" * 1000
    good = submit(bus, "after-deep", width=64, height=64)
    body = msgspec.json.encode(submit(bus, "deep", width=64, height=64))
    body = body.replace(b'"width":64', b'"input":' + deep + b',"width":64', 1)
    assert body.count(b"[") == 1000
    async with running_advisor(config) as advisor:
        await bus.js.publish("job.submitted", body, headers={"Nats-Msg-Id": "deep-1"})
        await poll(lambda: advisor.jobs.invalid == 1)
        await bus.publish(good)
        await advised(stored, ["after-deep"])
    assert [e.key for _, e in stored_events(config.events_db, "job.advised")] == ["after-deep"]


def test_every_failure_to_decode_a_submitted_message_is_a_bad_message():
    """Whatever the bytes (invalid UTF-8, too deep, too big, not JSON), the consumer
    counts the message as invalid and returns: nothing raises."""
    import logging

    from nats.aio.msg import Msg

    from services.advisor.jobs import JobConsumer

    consumer = JobConsumer.__new__(JobConsumer)
    consumer.invalid, consumer.log = 0, logging.getLogger("test")
    valid = msgspec.json.encode(make_event(JobSubmitted(spec=JobSpec()), id="j", key="k",
                                           ts=1.0, source="t"))  # fmt: skip
    bad = [
        valid.replace(b'"key":"k"', b'"key":"\xff\xfe"'),
        valid.replace(b'"spec":{', b'"spec":{"input":' + b"[" * 5000 + b"]" * 5000 + b","),
        valid.replace(b'"spec":{', b'"spec":{"input":"' + b"x" * 300_000 + b'",'),
        b"\xff" * 10,
        b"{" * 3000,
    ]
    for raw in bad:
        assert consumer._valid(Msg(None, data=raw)) is None  # type: ignore[arg-type]
    assert consumer.invalid == len(bad)
    assert consumer._valid(Msg(None, data=valid)) is not None  # type: ignore[arg-type]


async def test_a_stored_message_that_does_not_decode_is_skipped(bus, config):
    """A forged or broken stored.* message is logged and skipped; folding goes on."""
    async with running_advisor(config) as advisor:
        position = advisor.position
        deep = b"[" * 3000 + b"]" * 3000
        for raw in (b"{" * 3000, b'{"seq":%d,"event":%s}' % (position + 1, deep)):
            await bus.nc.publish("stored.queue.depth.changed", raw)
        depth = bus.event(QueueDepthChanged(depth=3), key="remote")
        assert await advisor.follower.publish_and_wait([depth], 10)
        assert advisor.state.remote_queue_depth == 3
        assert advisor.follower.skipped == 2
    assert advisor.position > position
