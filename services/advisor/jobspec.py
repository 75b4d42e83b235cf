"""The job spec as the advisor reads it: parsing and the filled-in shape.

The spec is ``schemas.jobs.JobSpec``, the one every service takes: it travels
inside ``job.submitted`` and advise requests (lenient about unknown fields,
so an older service skips newer ones); a body a person typed decodes as its
strict form ``JobSpecBody`` (an unknown field is an error). Every bad value
fails with msgspec's message naming the path, e.g. ``Expected `int` >= 1 - at
`$.width```; pass it on verbatim.

Units: pixels; frames; GB of VRAM (10^9 bytes); USD; seconds of audio.
Fields a job kind does not use are ignored by it (``tokens`` for an image).
"""

from __future__ import annotations

import re

import msgspec

from schemas import limits
from schemas.jobs import JobSpec, JobSpecBody
from services.advisor.config import AdvisorConfig

_body_decoder = msgspec.json.Decoder(JobSpecBody)


def parse_job_spec(raw: bytes | str) -> JobSpec:
    """Decode a body a person typed; raises ``msgspec.ValidationError`` naming the
    field or ``msgspec.DecodeError`` (any other failure, see ``schemas.limits.decode``)."""
    return as_event_spec(limits.decode(_body_decoder, raw, what="job spec"))


def as_event_spec(spec: JobSpec) -> JobSpec:
    """The lenient form of a spec (a strict one compares unequal to it), for
    recording inside an event and as a key of the advise reply cache."""
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


_PARAMS = re.compile(r"(?<![0-9.])(\d{1,6}(?:\.\d+)?)\s*b(?![a-z0-9])", re.IGNORECASE)


def params_from_model_name(model: str | None) -> float | None:
    """Billions of parameters read from a model name ("llama-3-8b" -> 8.0), if any.

    At most 6 integer digits (< 10^6 B): a longer number is not read as a size,
    so no model name can make the VRAM or run-time estimate absurd.
    """
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
