"""One job shape: one JobSpec everywhere, typed decision inputs that still read old
logs, strict forms derived (never written twice), one spelling of cancelled."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import msgspec
import pytest

import schemas
import services
from schemas import decode_event, encode_event, make_event
from schemas.adapters import ProviderJob, SimulateBody, SubmitRequest
from schemas.advisor import AdvisedInputs, CostRequest, JobAdvised
from schemas.flags import DEFAULTS
from schemas.jobs import CANCELLED, JobSpec, JobSubmitted, spelling
from schemas.providers import ProviderProfile
from schemas.strict import lenient, strict
from services.adapters.sim import simulate
from services.advisor.replay import recorded_decisions
from services.scheduler.table import JobTableProjection


def _advised(inputs: bytes) -> bytes:
    event = make_event(
        JobAdvised(target="local", rule="local_gpu", reason="r"), id="a", key="j", ts=1.0,
        source="advisor",
    )  # fmt: skip
    return encode_event(event).replace(b'"inputs":null', b'"inputs":' + inputs)


def test_every_service_takes_the_one_job_spec() -> None:
    for owner, field in (
        (JobSubmitted, "spec"),
        (AdvisedInputs, "spec"),
        (CostRequest, "job"),
    ):
        hint = msgspec.inspect.type_info(owner).fields  # type: ignore[attr-defined]
        [f] = [f for f in hint if f.name == field]
        assert JobSpec.__name__ in repr(f.type)
    assert issubclass(ProviderJob, JobSpec)  # a job for a provider: the spec plus its input
    assert msgspec.structs.fields(SubmitRequest)[1].type is ProviderJob


def test_simulate_takes_a_job_spec_with_width_and_height() -> None:
    """It used to refuse {width, height}: its job was another type."""
    body = b'{"provider":"runpod","seed":1,"job":{"width":512,"height":512,"steps":12}}'
    req = msgspec.json.decode(body, type=SimulateBody)
    assert (req.job.width, req.job.height) == (512, 512)
    assert simulate(req.provider, req.job, req.seed).units == 12  # the spec's steps
    with pytest.raises(msgspec.ValidationError, match=re.escape("`colour` - at `$.job`")):
        msgspec.json.decode(body.replace(b'"width"', b'"colour":1,"width"'), type=SimulateBody)


def test_old_job_advised_events_still_decode_and_replay() -> None:
    """Events written when ``inputs`` was a dict: ``{}`` (no inputs), a full dict
    (the same JSON as the typed inputs) and a foreign dict."""
    empty = decode_event(_advised(b"{}")).payload
    assert isinstance(empty, JobAdvised) and empty.replayable is None
    assert decode_event(_advised(b"null")).payload.replayable is None
    decision = {"target": "local", "rule": "local_gpu", "reason": "r", "vram_demand_gb": 8.0,
                "remote_considered": False}  # fmt: skip
    full = msgspec.json.encode({"spec": {"width": 512}, "telemetry_sample_id": "none",
                                "flags": DEFAULTS, "decision": decision})  # fmt: skip
    inputs = decode_event(_advised(full)).payload.replayable
    assert isinstance(inputs, AdvisedInputs) and inputs.spec == JobSpec(width=512)
    foreign = b'{"spec": {"width": "wide"}}'
    rows = [(1, "job.advised", _advised(b)) for b in (b"{}", foreign, full)]
    recorded = recorded_decisions(rows)
    assert recorded.without_inputs == 2 and len(recorded.records) == 1


def test_strict_forms_are_derived_not_written_twice() -> None:
    """A Struct with ``forbid_unknown_fields`` that subclasses a lenient Struct is a
    strict twin: only ``schemas.strict.strict`` may make one (14 were hand-written)."""
    twins = []
    for package in (schemas, services):
        for mod in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(mod.name)
            for cls in vars(module).values():
                if not (inspect.isclass(cls) and issubclass(cls, msgspec.Struct)):
                    continue
                base = cls.__mro__[1]
                if (
                    cls.__struct_config__.forbid_unknown_fields
                    and base is not msgspec.Struct
                    and not base.__struct_config__.forbid_unknown_fields
                    and strict(base) is not cls
                ):
                    twins.append(f"{module.__name__}.{cls.__name__}")
    assert not twins


def test_strict_rejects_a_typo_at_every_level_and_lenient_turns_it_back() -> None:
    gpu = {"gpu": "A100", "vram_gb": 80, "price_usd": 1.0, "vram": 80}
    doc = {"id": "p", "kind": "modal", "gpus": [gpu],
           "price_snapshot": {"date": "2025-01-01", "source": "s"}}  # fmt: skip
    raw = msgspec.json.encode(doc)
    with pytest.raises(msgspec.ValidationError, match=re.escape("`vram` - at `$.gpus[0]`")):
        msgspec.json.decode(raw, type=strict(ProviderProfile))
    loose = msgspec.json.decode(raw, type=ProviderProfile)
    del gpu["vram"]
    typed = msgspec.json.decode(msgspec.json.encode(doc), type=strict(ProviderProfile))
    assert type(typed) is not ProviderProfile and lenient(typed) == loose
    assert strict(ProviderProfile) is strict(ProviderProfile)


def test_one_spelling_of_cancelled() -> None:
    assert CANCELLED == "cancelled"
    assert schemas.event_types()["job.cancelled"].payload.__name__ == "JobCancelled"
    assert "job.canceled" not in schemas.event_types()
    assert spelling("job.canceled") == "job.cancelled" == spelling("job.cancelled")
    assert spelling("canceled") == "cancelled" and spelling("uncanceledx") == "uncanceledx"
    assert spelling("job.*") == "job.*"


def test_the_job_table_says_infeasible() -> None:
    proj = JobTableProjection()
    event = make_event(
        JobAdvised(target="infeasible", rule="infeasible", reason="too big"), id="a", key="j",
        ts=1.0, source="advisor",
    )  # fmt: skip
    assert proj.apply(proj.initial(), event)["j"].state == "infeasible"
