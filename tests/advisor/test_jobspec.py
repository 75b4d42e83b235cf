from __future__ import annotations

import msgspec
import pytest

from schemas.jobs import JobSpec, JobSpecBody
from services.advisor.config import DEFAULT_CONFIG
from services.advisor.jobspec import (
    as_event_spec,
    params_from_model_name,
    parse_job_spec,
    shape,
)


def test_defaults() -> None:
    spec = parse_job_spec(b"{}")
    assert spec == JobSpec()
    assert (spec.kind, spec.batch, spec.frames, spec.debug) == ("image", 1, 1, False)
    assert type(spec) is JobSpec


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"width": 0}', "Expected `int` >= 1 - at `$.width`"),
        (b'{"height": "big"}', "Expected `int | null`, got `str` - at `$.height`"),
        (b'{"kind": "3d"}', "Invalid enum value '3d' - at `$.kind`"),
        (b'{"batch": 0}', "Expected `int` >= 1 - at `$.batch`"),
        (b'{"vram_gb": -2}', "Expected `float` > 0.0 - at `$.vram_gb`"),
        (b'{"max_cost_usd": -0.01}', "Expected `float` >= 0.0 - at `$.max_cost_usd`"),
        (b'{"prefer": "no spaces"}', "at `$.prefer`"),
        (b'{"widht": 512}', "Object contains unknown field `widht`"),
    ],
)
def test_bad_field_is_named(body: bytes, message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as exc:
        parse_job_spec(body)
    assert message in str(exc.value)


def test_event_form_skips_unknown_fields() -> None:
    spec = msgspec.json.decode(b'{"width": 512, "added_later": 1}', type=JobSpec)
    assert spec.width == 512


def test_body_converts_to_event_form() -> None:
    body = JobSpecBody(width=640, height=480, debug=True)
    spec = as_event_spec(body)
    assert type(spec) is JobSpec
    assert msgspec.json.encode(spec) == msgspec.json.encode(body)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("llama-3-8b", 8.0),
        ("Qwen2.5-72B-Instruct", 72.0),
        ("mistral-7b-v0.3", 7.0),
        ("phi-3.5-mini", None),
        (None, None),
    ],
)
def test_params_from_model_name(name: str | None, params: float | None) -> None:
    assert params_from_model_name(name) == params


def test_shape_fills_defaults_and_counts_pixels() -> None:
    s = shape(JobSpec(width=1024, height=512, batch=2), DEFAULT_CONFIG)
    assert s.pixels == 524_288
    assert s.megapixels_total == pytest.approx(1.048576)
    assert s.steps == DEFAULT_CONFIG.defaults.steps
    video = shape(JobSpec(kind="video", width=512, height=512, frames=24), DEFAULT_CONFIG)
    assert video.megapixels_total == pytest.approx(512 * 512 * 24 / 1e6)
    llm = shape(JobSpec(kind="llm", model="llama-3-8b"), DEFAULT_CONFIG)
    assert (llm.pixels, llm.params_b) == (0, 8.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"model":' + b"[" * 2000 + b"]" * 2000 + b"}", "nested 2001 levels deep"),
        (b'{"model":"\xff"}', "invalid UTF-8"),
        (b"{" * 5000, "nested"),
    ],
)
def test_any_failure_to_decode_a_spec_is_a_decode_error(raw: bytes, message: str) -> None:
    """RecursionError and UnicodeDecodeError used to escape msgspec's error types."""
    with pytest.raises(msgspec.DecodeError, match=message):
        parse_job_spec(raw)
