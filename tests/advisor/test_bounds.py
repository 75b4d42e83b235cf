"""Every number a client, the seed file or the config can give the advisor is
bounded, and every admitted combination of extremes gives finite answers: no
reply holds inf or nan (msgspec writes both as ``null``), no reason says
``$inf`` or ``$nan``, and an estimate is ``null`` only when nothing can run it.

Property-style: the numeric fields are found by walking the types
(``msgspec.inspect``), each set to the lowest or highest value its bound admits
(chosen per field by a seeded RNG, plus the all-low, all-high and worst cases),
and the result is decoded through the strict types, so it is admitted input.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from schemas.advisor import CostRequest, FlagsUpdate, QueueDepthChanged
from schemas.flags import FlagsChanged
from schemas.jobs import JobSpec, JobSpecBody
from schemas.providers import ProviderProfileBody, ProviderPut, ProviderRef, ProviderUpserted
from services.advisor.config import DEFAULT_CONFIG, AdvisorConfig
from services.advisor.pricing import preview_costs
from services.advisor.registry import fold, parse_profile
from services.advisor.rules import Decider
from services.advisor.service import job_advised
from services.advisor.state import AdvisorState, context

from .factories import ON, gpu, sample

Pick = Callable[[str, float, float], float]
REQUEST_TYPES = (JobSpecBody, CostRequest, ProviderPut, AdvisorConfig)
DIVISORS = {"relative_speed", "throughput_factor", "local_relative_speed"}
EXTRA = {"billing_increment_s": 0.001}
"""Values a field admits besides its bounds: the smallest non-zero billing increment."""


def bounds(t: mi.FloatType | mi.IntType) -> tuple[float | None, float | None]:
    """The lowest and highest values ``t`` admits (None: unbounded)."""
    lo: float | None = t.ge
    if lo is None and t.gt is not None:
        lo = t.gt + 1 if isinstance(t, mi.IntType) else math.nextafter(t.gt, math.inf)
    hi: float | None = t.le
    if hi is None and t.lt is not None:
        hi = t.lt - 1 if isinstance(t, mi.IntType) else math.nextafter(t.lt, -math.inf)
    return lo, hi


def numbers(t: mi.Type, path: str = "$") -> Iterator[tuple[str, mi.FloatType | mi.IntType]]:
    """Every numeric field reachable from ``t``, with its JSON path."""
    if isinstance(t, (mi.FloatType, mi.IntType)):
        yield path, t
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            yield from numbers(member, path)
    elif isinstance(t, mi.StructType):
        for f in t.fields:
            yield from numbers(f.type, f"{path}.{f.encode_name}")
    elif isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        yield from numbers(t.item_type, f"{path}[...]")
    elif isinstance(t, mi.DictType):
        yield from numbers(t.value_type, f"{path}[...]")


@pytest.mark.parametrize("type_", REQUEST_TYPES, ids=lambda t: t.__name__)
def test_every_number_is_bounded_above_and_below(type_: type) -> None:
    found = list(numbers(mi.type_info(type_)))
    assert found
    unbounded = [path for path, t in found if None in bounds(t)]
    assert unbounded == []


def extreme(t: mi.Type, value: Any, pick: Pick, name: str = "") -> Any:
    """``value`` (builtins) with every number present replaced by ``pick``'s choice."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(t, (mi.FloatType, mi.IntType)):
        lo, hi = bounds(t)
        assert lo is not None and hi is not None, name
        return pick(name, lo, hi)
    if isinstance(t, mi.UnionType):
        for member in t.types:
            numeric = isinstance(member, (mi.FloatType, mi.IntType))
            if (numeric and isinstance(value, (int, float))) or (
                isinstance(member, mi.StructType) and isinstance(value, dict)
            ):
                return extreme(member, value, pick, name)
        return value
    if isinstance(t, mi.StructType):
        fields = {f.encode_name: f.type for f in t.fields}
        return {k: extreme(fields[k], v, pick, k) for k, v in value.items()}
    if isinstance(t, (mi.ListType, mi.VarTupleType)):
        return [extreme(t.item_type, v, pick, name) for v in value]
    if isinstance(t, mi.DictType):
        return {k: extreme(t.value_type, v, pick, name) for k, v in value.items()}
    return value


def admitted(type_: type, base: dict[str, Any], pick: Pick) -> Any:
    """``base`` at the extremes ``pick`` chooses, decoded as the strict ``type_``."""
    doc = extreme(mi.type_info(type_), base, pick)
    return msgspec.json.decode(msgspec.json.encode(doc), type=type_)


PROFILE: dict[str, Any] = {
    "id": "edge",
    "kind": "runpod_serverless",
    "gpus": [
        {"gpu": "tiny", "vram_gb": 8, "price_usd": 1.0, "unit": "second", "relative_speed": 1},
        {"gpu": "huge", "vram_gb": 80, "price_usd": 2.0, "unit": "hour", "relative_speed": 1},
    ],
    "price_snapshot": {"date": "2026-02-28", "source": "test"},
    "hardware": {
        "throughput_factor": 1,
        "cold_start_s": 1,
        "bills_cold_start": True,
        "billing_increment_s": 1,
    },
    "transfer_usd_per_gb": 1,
}
CONFIG: dict[str, Any] = {
    **msgspec.to_builtins(DEFAULT_CONFIG),
    "price_overrides": [
        {"provider": "edge", "gpu": "tiny", "multiplier": 2.0},
        {"provider": "edge", "gpu": "huge", "price_usd": 1.0, "unit": "second"},
    ],
}


def specs(pick: Pick) -> Iterator[JobSpec]:
    for kind in ("image", "video", "llm", "speech", "other"):
        for hint in (1.0, None):
            base = {
                "kind": kind, "width": 1, "height": 1, "batch": 1, "frames": 1, "steps": 1,
                "model": "big-999999b" if kind == "llm" else "sdxl", "vram_gb": hint,
                "max_cost_usd": 1.0, "tokens": 1, "audio_seconds": 1.0, "debug": True,
            }  # fmt: skip
            yield admitted(JobSpecBody, base, pick)
    yield admitted(JobSpecBody, {"prefer": "edge", "max_cost_usd": 1.0}, pick)


def low(name: str, lo: float, hi: float) -> float:
    return lo


def high(name: str, lo: float, hi: float) -> float:
    return hi


def worst(name: str, lo: float, hi: float) -> float:
    """Most work at the highest prices on the slowest GPUs."""
    return EXTRA.get(name, lo) if name in DIVISORS or name in EXTRA else hi


def seeded(seed: int) -> Pick:
    rng = random.Random(seed)
    return lambda name, lo, hi: rng.choice([lo, hi, *([EXTRA[name]] if name in EXTRA else [])])


PICKS = [("low", low), ("high", high), ("worst", worst)] + [
    (f"random-{i}", seeded(i)) for i in range(24)
]
WORD = re.compile(r"\b(inf|nan)\b", re.IGNORECASE)


def assert_finite(value: Any, where: str) -> None:
    """No float anywhere in ``value`` is inf or nan; no text mentions either."""
    if isinstance(value, float):
        assert math.isfinite(value), where
    elif isinstance(value, str):
        assert not WORD.search(value), f"{where}: {value}"
    elif isinstance(value, dict):
        for k, v in value.items():
            assert_finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_finite(v, f"{where}[{i}]")


@pytest.mark.parametrize(("name", "pick"), PICKS, ids=[n for n, _ in PICKS])
def test_extreme_admitted_inputs_give_finite_answers(name: str, pick: Pick) -> None:
    config = admitted(AdvisorConfig, CONFIG, pick)
    profile = parse_profile(msgspec.json.encode(admitted(ProviderProfileBody, PROFILE, pick)))
    registry = fold([ProviderUpserted(profile=profile)])
    for telemetry in (sample(gpu(0, free_mib=2**20, total_mib=2**20)), sample()):
        state = AdvisorState(telemetry=telemetry, flags=ON, registry=registry)
        decider = Decider(context(state), config)
        for spec in specs(pick):
            decision = decider.decide(spec, details=True)
            assert decision.details is not None
            # a price for every decision but an infeasible one, which will not run
            assert (decision.estimate_usd is None) == (decision.target == "infeasible")
            assert_finite(msgspec.to_builtins(decision), "decision")
            advised = job_advised(spec, state, decider, 1, "digest")
            assert_finite(msgspec.to_builtins(advised), "job.advised")
            duration = admitted(CostRequest, {"duration_minutes": 1.0}, pick).duration_minutes
            for queue in ("remote", "local", "cpu", "edge"):
                for request in (
                    CostRequest(queue=queue, job=spec, debug=True),  # type: ignore[arg-type]
                    CostRequest(queue=queue, duration_minutes=duration),
                ):
                    preview = preview_costs(request, registry, ON, config)
                    assert_finite(msgspec.to_builtins(preview), f"preview {queue}")
                    if preview.estimate is None:  # only when nothing can run it
                        assert "no registered provider can run this job" in preview.warnings


@pytest.mark.parametrize(
    ("type_", "doc", "path"),
    [
        (ProviderProfileBody, {**PROFILE, "gpus": [{**PROFILE["gpus"][0], "price_usd": 1e308}]},
         "$.gpus[0].price_usd"),
        (ProviderProfileBody, {**PROFILE, "hardware": {"billing_increment_s": 1e-300}},
         "$.hardware"),
        (ProviderProfileBody, {**PROFILE, "gpus": [{**PROFILE["gpus"][0],
         "relative_speed": 1e-300}]}, "$.gpus[0].relative_speed"),
        (JobSpecBody, {"max_cost_usd": 1e300}, "$.max_cost_usd"),
        (AdvisorConfig, {"speed": {"overhead_s": 1e300}}, "$.speed.overhead_s"),
        (AdvisorConfig, {"price_overrides": [{"provider": "x", "multiplier": 1e300}]},
         "$.price_overrides[0].multiplier"),
    ],
)  # fmt: skip
def test_absurd_numbers_are_refused_naming_the_field(
    type_: type, doc: dict[str, Any], path: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(f"at `{path}`")):
        msgspec.json.decode(msgspec.json.encode(doc), type=type_)


@pytest.mark.parametrize("raw", [b'{"vram_gb": 1e309}', b'{"width": 1e309}'])
def test_json_infinity_is_refused(raw: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=JobSpecBody)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_toml_nan_and_inf_are_refused(value: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape("at `$.pricing.usd_per_kwh`")):
        msgspec.toml.decode(f"[pricing]\nusd_per_kwh = {value}", type=AdvisorConfig)


def _unbounded(t: mi.Type, path: str, seen: set[type]) -> Iterator[str]:
    """Paths of strings, arrays and objects in ``t`` without a length bound."""
    if isinstance(t, mi.StrType):
        if t.max_length is None and t.pattern is None:
            yield path
    elif isinstance(t, (mi.ListType, mi.TupleType, mi.VarTupleType, mi.SetType, mi.DictType)):
        if getattr(t, "max_length", 0) is None:
            yield path
        if isinstance(t, mi.DictType):
            yield from _unbounded(t.key_type, path + "{key}", seen)
            yield from _unbounded(t.value_type, path + "{}", seen)
        elif isinstance(t, mi.TupleType):
            for i, item in enumerate(t.item_types):
                yield from _unbounded(item, f"{path}[{i}]", seen)
        else:
            yield from _unbounded(t.item_type, path + "[]", seen)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            yield from _unbounded(member, path, seen)
    elif isinstance(t, mi.StructType) and t.cls not in seen:
        seen.add(t.cls)
        for f in t.fields:
            yield from _unbounded(f.type, f"{path}.{f.encode_name}", seen)


@pytest.mark.parametrize(
    "type_",
    [*REQUEST_TYPES, ProviderUpserted, FlagsUpdate, FlagsChanged, ProviderRef, QueueDepthChanged],
)
def test_every_text_and_list_a_person_types_has_a_length_bound(type_: type) -> None:
    """A 1 MB provider `notes` was stored; a restarted advisor then never finished
    rebuilding. Every string, list and object is bounded (``schemas.limits``)."""
    assert list(_unbounded(mi.type_info(type_), "$", set())) == []
