"""Advisor thresholds and constants: one Struct, read strictly from TOML.

The Python defaults below are the embedded default (``ops/advisor.toml`` is a
copy an operator edits; a test keeps the two equal). A TOML file may set any
subset: every field it omits keeps its default. A typo or a bad value is an
error naming the file and the field.

Every number is bounded to a finite range (generous: far beyond any real job or
machine), so no config can make an estimate inf or nan; a value out of range
is an error naming the field, like a typo.

Units: GB are 10^9 bytes of VRAM/RAM as the GPU vendors print them; minutes and
seconds are wall-clock; prices are USD. "Reference GPU" means a GPU of relative
speed 1.0 (about an RTX 4090); every speed constant is measured on it.

VRAM demand (see ``services/advisor/vram.py``):

    explicit hint            vram_gb from the job spec, used as is
    image / video / speech / other
                             base_gb(kind, or models_gb[model] when known)
                             + per_megapixel_gb(kind) * megapixels * batch * frames
    llm                      weights_gb + llm_overhead_gb, where weights_gb is
                             models_gb[model] when known, else
                             params_b * llm_bytes_per_param, params_b read from the
                             model name ("llama-3-8b" -> 8) or llm_default_params_b
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from schemas.advisor import RuleThresholds
from schemas.jobs import AudioSeconds, Side, Steps, Tokens
from schemas.limits import MAX_NAME
from schemas.providers import MAX_SECONDS, MAX_VRAM_GB, Name, Price, Speed
from schemas.strict import lenient, strict
from services.advisor.errors import AdvisorConfigError

Gb = Annotated[float, msgspec.Meta(ge=0, le=MAX_VRAM_GB)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
Minutes = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]
Watts = Annotated[float, msgspec.Meta(ge=0, le=100_000)]

Factor = Annotated[float, msgspec.Meta(gt=0, le=100_000)]


class _Section(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every config section: immutable, keyword-only. A file is read as the
    strict form (``schemas.strict.strict``), so a typo is an error naming it."""


class KindVram(_Section, frozen=True):
    base_gb: Gb
    per_megapixel_gb: Annotated[float, msgspec.Meta(ge=0, le=1024)] = 0.0


MAX_MODELS = 1024
"""Entries of ``[vram.models_gb]``."""
MAX_PRICE_OVERRIDES = 1024


def _models_gb() -> dict[str, float]:
    # Weights + runtime in fp16 as commonly loaded by ComfyUI / diffusers / vLLM.
    return {
        "sd15": 2.5,
        "sd21": 3.0,
        "sdxl": 6.5,
        "sd3-medium": 10.0,
        "flux-schnell": 22.0,
        "flux-dev": 22.0,
        "svd": 9.0,
        "whisper-large-v3": 4.0,
        "whisper-small": 1.0,
    }


class VramConfig(_Section, frozen=True):
    image: KindVram = KindVram(base_gb=6.5, per_megapixel_gb=1.5)
    video: KindVram = KindVram(base_gb=10.0, per_megapixel_gb=0.6)
    speech: KindVram = KindVram(base_gb=4.0)
    other: KindVram = KindVram(base_gb=4.0)
    llm_bytes_per_param: Annotated[float, msgspec.Meta(gt=0, le=64)] = 2.0
    llm_default_params_b: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 7.0
    llm_overhead_gb: Gb = 1.5
    models_gb: Annotated[
        dict[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)], Gb],
        msgspec.Meta(max_length=MAX_MODELS),
    ] = msgspec.field(default_factory=_models_gb)


class CpuSlowdown(_Section, frozen=True):
    """How many times longer the CPU takes than the reference GPU, per kind."""

    image: Factor = 40.0
    video: Factor = 60.0
    llm: Factor = 12.0
    speech: Factor = 8.0
    other: Factor = 10.0


class SpeedConfig(_Section, frozen=True):
    """Run time on the reference GPU.

    image/video: overhead_s + s_per_megapixel_step * megapixels * steps * batch * frames;
    llm: overhead_s + llm_s_per_token_per_b * params_b * tokens;
    speech: overhead_s + speech_realtime_factor * audio_seconds; other: other_minutes.
    """

    image_s_per_megapixel_step: Seconds = 0.15
    video_s_per_megapixel_step: Seconds = 0.15
    llm_s_per_token_per_b: Seconds = 0.003
    speech_realtime_factor: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 0.05
    other_minutes: Minutes = 1.0
    overhead_s: Seconds = 5.0
    local_relative_speed: Speed = 1.0
    cpu_slowdown: CpuSlowdown = CpuSlowdown()


class JobDefaults(_Section, frozen=True):
    """Values used when a job spec leaves a field out."""

    width: Side = 1024
    height: Side = 1024
    steps: Steps = 25
    tokens: Tokens = 512
    audio_seconds: AudioSeconds = 60.0


class PricingConfig(_Section, frozen=True):
    """Local energy cost, result transfer size, rounding.

    Local and CPU cost is energy only: watts * hours * usd_per_kwh / 1000.
    Transfer: transfer_base_gb + transfer_gb_per_megapixel * megapixels * batch
    * frames, priced at each provider's own transfer_usd_per_gb.
    """

    usd_per_kwh: Annotated[float, msgspec.Meta(ge=0, le=100)] = 0.17
    local_gpu_watts: Watts = 350.0
    cpu_watts: Watts = 120.0
    transfer_base_gb: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] = 0.0
    transfer_gb_per_megapixel: Annotated[float, msgspec.Meta(ge=0, le=100)] = 0.002
    round_digits: Annotated[int, msgspec.Meta(ge=0, le=8)] = 4


class PriceOverride(_Section, frozen=True):
    """Replace or scale a registered provider's price at decision time.

    Set exactly one of ``price_usd`` (with ``unit``) or ``multiplier``. ``gpu``
    limits it to one GPU type of the provider; left out, it applies to all.
    """

    provider: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
    gpu: Name | None = None
    price_usd: Price | None = None
    unit: Literal["hour", "second"] = "hour"
    multiplier: Annotated[float, msgspec.Meta(gt=0, le=1000)] | None = None

    def __post_init__(self) -> None:
        if (self.price_usd is None) == (self.multiplier is None):
            raise ValueError("set exactly one of `price_usd` or `multiplier`")


class AdvisorConfig(_Section, frozen=True):
    """``rules`` run in their numbered order; rule 4 (wait for the local GPU) closes
    them (see ``services/advisor/rules.py``)."""

    rules: RuleThresholds = RuleThresholds()
    vram: VramConfig = VramConfig()
    speed: SpeedConfig = SpeedConfig()
    defaults: JobDefaults = JobDefaults()
    pricing: PricingConfig = PricingConfig()
    price_overrides: Annotated[
        tuple[PriceOverride, ...], msgspec.Meta(max_length=MAX_PRICE_OVERRIDES)
    ] = ()


DEFAULT_CONFIG = AdvisorConfig()


def parse_config(data: bytes | str, source: str = "<config>") -> AdvisorConfig:
    """Decode TOML text into a config; errors name ``source`` and the field."""
    try:
        return lenient(msgspec.toml.decode(data, type=strict(AdvisorConfig)))
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise AdvisorConfigError(source, str(e)) from e


def load_config(path: Path | str | None = None) -> AdvisorConfig:
    """Read a config file; ``None`` gives the embedded default."""
    if path is None:
        return DEFAULT_CONFIG
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AdvisorConfigError(path, f"cannot read: {e.strerror or e}") from e
    return parse_config(data, str(path))


def config_digest(config: AdvisorConfig) -> str:
    """A stable short hash of a config, recorded beside each decision."""
    return hashlib.sha256(msgspec.json.encode(config)).hexdigest()[:16]
