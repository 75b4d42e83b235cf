"""Schemas: one decoder validates any event and names the bad field."""

from __future__ import annotations

import msgspec
import pytest

import schemas
from schemas.jobs import JobSpec, JobSpecBody, JobSubmitted
from services.runtime.clock import ManualClock
from services.runtime.ids import IdGenerator


def sample() -> schemas.Event:
    return schemas.make_event(
        JobSubmitted(spec=JobSpec(width=512, height=768)), id="e1", key="j1", ts=1.5, source="t"
    )


def test_round_trip_keeps_type_equal_to_subject():
    event = sample()
    raw = schemas.encode_event(event)
    assert raw.startswith(b'{"type":"job.submitted"')
    decoded = schemas.decode_event(raw)
    assert decoded == event and decoded.type == "job.submitted"
    assert schemas.subject_of(event.payload) == "job.submitted"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"type":"job.submitted","id":"1","key":"k","ts":1,"source":"s",'
         b'"data":{"spec":{"width":"wide"}}}',
         "Expected `int | null`, got `str` - at `$.data.spec.width`"),
        (b'{"type":"job.submitted","id":"1","key":"k","ts":1,"source":"s",'
         b'"data":{"spec":{"width":0}}}', "Expected `int` >= 1 - at `$.data.spec.width`"),
        (b'{"type":"job.submitted","id":"1","ts":1,"source":"s","data":{"spec":{}}}',
         "Object missing required field `key`"),
        (b'{"type":"job.nope","id":"1","key":"k","ts":1,"source":"s","data":{}}',
         "Invalid value 'job.nope' - at `$.type`"),
    ],
)  # fmt: skip
def test_decoder_names_the_bad_field(raw, message):
    with pytest.raises(msgspec.ValidationError) as e:
        schemas.decode_event(raw)
    assert message in str(e.value)


def test_messages_between_services_skip_newer_fields_but_bodies_do_not():
    raw = schemas.encode_event(sample()).replace(b'"width":512', b'"width":512,"future":1')
    assert schemas.decode_event(raw).payload.spec.width == 512
    with pytest.raises(msgspec.ValidationError, match="unknown field `colour`"):
        msgspec.json.decode(b'{"width": 5, "colour": "red"}', type=JobSpecBody)


def test_every_event_type_has_a_json_schema_and_a_description():
    schema = schemas.events_json_schema()
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == set(schemas.event_types())
    subjects = {s.name: s for s in schemas.registry()}
    for name in schemas.event_types():
        assert subjects[name].stored and subjects[name].description
    assert not subjects["svc.heartbeat"].stored
    for endpoint in ("gpuroute.store.read", "gpuroute.advisor.advise", "gpuroute.adapters.submit"):
        assert subjects[endpoint].description.startswith("Request/reply: ")
    assert schemas.stream_subjects() == sorted({n.split(".")[0] + ".>" for n in mapping})


def test_ids_are_time_ordered_and_unique():
    clock = ManualClock()
    gen = IdGenerator(clock)
    ids = [gen.new() for _ in range(5000)]  # many in one millisecond
    clock.advance(0.001)
    ids += [gen.new() for _ in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i[14] == "7" for i in ids)  # UUID version 7


def test_ids_are_the_uuid7_of_their_millisecond_counter_and_random_bits():
    """``new`` formats an id without building its 128-bit int: the same string
    ``_uuid7`` makes of the same millisecond, counter and random bits, when
    the millisecond changes, repeats, goes back, or borrows the next one."""
    import random
    import uuid

    from services.runtime.ids import _uuid7

    clock, taken = ManualClock(), random.Random(12)
    drawn: list[bytes] = []

    def randbytes(k: int) -> bytes:
        drawn.append(taken.randbytes(k))
        return drawn[-1]

    gen, last_ms, counter, borrowed = IdGenerator(clock, randbytes=randbytes), -1, 0, 0
    steps = {3000: -0.5, 7000: 0.001, 9000: 1.0}  # back (the counter goes on), on
    for i in range(12000):
        clock.advance(steps.get(i, 0.0))
        drawn.clear()
        new = gen.new()
        ms = int(clock.now() * 1000)
        if ms > last_ms:
            counter = int.from_bytes(drawn.pop(0), "big") & 0x7FF
        else:
            ms, counter = last_ms, counter + 1
            if counter > 0xFFF:
                ms, counter, borrowed = ms + 1, 0, borrowed + 1
        last_ms = ms
        rand_b = int.from_bytes(drawn.pop(0), "big") & ((1 << 62) - 1)
        assert new == _uuid7(ms, counter, rand_b) == str(uuid.UUID(new)), i
    assert borrowed >= 2


def test_follow_reads_only_the_type_prefixes_its_patterns_name():
    from services.runtime.follow import literal_prefixes, subject_matches

    assert literal_prefixes(["job.started", "flags.>"]) == ["job.started", "flags."]
    assert literal_prefixes(["job.*", "*.failed"]) is None
    assert subject_matches("*.failed", "job.failed") and not subject_matches("job.*", "job")


def test_derived_ids_are_deterministic_uuid7_sorted_with_their_parent():
    import uuid

    from services.runtime.ids import derived_id

    gen = IdGenerator(ManualClock())
    parent = gen.new()
    a = derived_id(parent, "advised")
    assert a == derived_id(parent, "advised") != derived_id(parent, "started")
    assert uuid.UUID(a).version == 7 and a[:13] == parent[:13]  # same millisecond
    assert derived_id("seed:provider:runpod", "x")[:13] == "00000000-0000"
    assert derived_id("z" * 12 + "7" + "z" * 19, "x")[:13] == "00000000-0000"  # not hex


def test_infinite_or_negative_numbers_are_refused_at_decode():
    raw = schemas.encode_event(sample()).replace(b'"ts":1.5', b'"ts":1e309')
    with pytest.raises(msgspec.ValidationError, match=r"\$\.ts"):
        schemas.decode_event(raw)
