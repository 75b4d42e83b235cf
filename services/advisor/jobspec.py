"""The job spec: what a client asks to run, validated field by field.

Two Structs with the same fields: :class:`JobSpec` travels inside events
(lenient about unknown fields, so an older service skips newer ones) and
:class:`JobSpecBody` is what an HTTP body or a request decodes into (an unknown
field is an error). Every bad value fails with msgspec's message naming the
path, e.g. ``Expected `int` >= 1 - at `$.width```; pass it on verbatim.

Units: pixels; frames; GB of VRAM (10^9 bytes); USD; seconds of audio.
Fields a job kind does not use are ignored by it (``tokens`` for an image).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from services.advisor.config import AdvisorConfig

JobKind = Literal["image", "video", "llm", "speech", "other"]

# A preferred target: "local", "cpu", "remote", or a provider id.
TARGET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TargetName = Annotated[str, msgspec.Meta(pattern=TARGET_PATTERN)]
Side = Annotated[int, msgspec.Meta(ge=1, le=16384)]


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A job as the advisor sees it.

    ``width``/``height``/``steps``/``tokens``/``audio_seconds`` left out take the
    config's ``[defaults]``. ``vram_gb`` is an explicit VRAM hint that replaces
    the estimate. ``max_cost_usd`` caps a remote estimate. ``prefer`` names a
    target honoured when feasible. ``debug`` asks for the details block.
    """

    kind: JobKind = "image"
    width: Side | None = None
    height: Side | None = None
    batch: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 1
    frames: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1
    steps: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    vram_gb: Annotated[float, msgspec.Meta(gt=0, le=4096)] | None = None
    max_cost_usd: Annotated[float, msgspec.Meta(ge=0)] | None = None
    prefer: TargetName | None = None
    debug: bool = False
    tokens: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] | None = None
    audio_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] | None = None


class JobSpecBody(JobSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A job spec as a client sends it: an unknown field is an error."""


_body_decoder = msgspec.json.Decoder(JobSpecBody)


def parse_job_spec(raw: bytes | str) -> JobSpec:
    """Decode an HTTP/request body; raises ``msgspec.ValidationError`` naming the field."""
    return as_event_spec(_body_decoder.decode(raw))


def as_event_spec(spec: JobSpec) -> JobSpec:
    """The lenient form of a spec, for recording inside an event."""
    if type(spec) is JobSpec:
        return spec
    return JobSpec(**msgspec.structs.asdict(spec))


class Shape(msgspec.Struct, frozen=True, kw_only=True):
    """A spec with the defaults filled in: the numbers every formula uses."""

    width: int
    height: int
    pixels: int
    megapixels_total: float
    steps: int
    tokens: int
    audio_seconds: float
    params_b: float | None


_PARAMS = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)\s*b(?![a-z0-9])", re.IGNORECASE)


def params_from_model_name(model: str | None) -> float | None:
    """Billions of parameters read from a model name ("llama-3-8b" -> 8.0), if any."""
    if not model:
        return None
    found = _PARAMS.findall(model)
    return float(found[-1]) if found else None


def shape(spec: JobSpec, config: AdvisorConfig) -> Shape:
    """Fill the defaults in. Pixels count only for image and video jobs.

    ``megapixels_total`` is width * height * batch * frames / 1e6.
    """
    d = config.defaults
    width = spec.width or d.width
    height = spec.height or d.height
    visual = spec.kind in ("image", "video")
    pixels = width * height if visual else 0
    frames = spec.frames if spec.kind == "video" else 1
    return Shape(
        width=width,
        height=height,
        pixels=pixels,
        megapixels_total=pixels * spec.batch * frames / 1e6,
        steps=spec.steps or d.steps,
        tokens=spec.tokens or d.tokens,
        audio_seconds=spec.audio_seconds or d.audio_seconds,
        params_b=params_from_model_name(spec.model),
    )
