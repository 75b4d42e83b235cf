"""What-if over an event log: ``gpuroute replay --what-if FILE --db PATH``.

Runs on the rows of the store's SQLite file (no NATS; the CLI reads them). Every ``job.advised`` the
advisor published keeps :class:`~schemas.advisor.AdvisedInputs` in its
``inputs``: the spec, the store position its state had folded up to, and the
references of the context it used. Folding the log's followed events
(``state.FOLLOWED``) up to that position rebuilds the exact context; the
recorded telemetry sample id, registry version, flags and queue depth check
the rebuild. Each decision is then re-run with FILE's thresholds and prices
(``whatif.what_if``).

A ``job.advised`` without inputs (published by something else) is counted and
skipped; one whose context cannot be rebuilt (a log cut short, say) is listed
as a mismatch and not re-run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from schemas import decode_event
from schemas.advisor import AdvisedInputs
from schemas.jobs import JobAdvised
from services.advisor.config import AdvisorConfig, config_digest, load_config
from services.advisor.decision import AdviceRecord
from services.advisor.state import FOLLOWED, AdvisorEvent, AdvisorState, all_flags, apply, context
from services.advisor.whatif import WhatIfReport, render, what_if
from services.runtime.follow import subject_matches


class RecordedDecisions(msgspec.Struct, kw_only=True):
    """The decisions of a log with their rebuilt inputs."""

    records: list[AdviceRecord]
    without_inputs: int = 0
    mismatches: list[str] = []
    recorded_digests: list[str] = []


def _followed(subject: str) -> bool:
    return any(subject_matches(p, subject) for p in FOLLOWED)


def _check(state: AdvisorState, inputs: AdvisedInputs) -> str | None:
    """Why the rebuilt state is not the one the decision saw (None: it is)."""
    ctx = context(state)
    found = (
        ctx.telemetry.sample_id,
        state.registry.version,
        all_flags(state),
        state.remote_queue_depth,
    )
    recorded = (
        inputs.telemetry_sample_id,
        inputs.registry_version,
        inputs.flags,
        inputs.remote_queue_depth,
    )
    names = ("telemetry sample", "registry version", "flags", "remote queue depth")
    for name, want, got in zip(names, recorded, found, strict=True):
        if want != got:
            return f"{name} {got!r} at position {inputs.state_position}, recorded {want!r}"
    return None


def recorded_decisions(rows: Iterable[tuple[int, str, bytes]]) -> RecordedDecisions:
    """Rebuild every recorded decision of a log given as (seq, type, body) rows."""
    followed: list[tuple[int, AdvisorEvent]] = []
    advised: list[tuple[int, str, AdvisedInputs]] = []
    without = 0
    for seq, subject, body in rows:
        if subject == "job.advised":
            event = decode_event(body)
            data = event.payload
            assert isinstance(data, JobAdvised)
            try:
                inputs = msgspec.convert(data.inputs, AdvisedInputs) if data.inputs else None
            except msgspec.ValidationError:
                inputs = None
            if inputs is None:
                without += 1
            else:
                advised.append((inputs.state_position, event.key, inputs))
        elif _followed(subject):
            followed.append((seq, decode_event(body).payload))
    advised.sort(key=lambda a: a[0])  # stable: log order within one position
    result = RecordedDecisions(records=[], without_inputs=without)
    state, i = AdvisorState(), 0
    for position, job_id, inputs in advised:
        while i < len(followed) and followed[i][0] <= position:
            state = apply(state, followed[i][1])
            i += 1
        problem = _check(state, inputs)
        if problem is not None:
            result.mismatches.append(f"{job_id}: {problem}")
            continue
        result.records.append(
            AdviceRecord(
                job_id=job_id,
                spec=inputs.spec,
                context=context(state),
                decision=inputs.decision,
                config_digest=inputs.config_digest,
            )
        )
    result.recorded_digests = sorted({r.config_digest for r in result.records})
    return result


def what_if_log(
    rows: Iterable[tuple[int, str, bytes]], config: AdvisorConfig
) -> tuple[WhatIfReport, RecordedDecisions]:
    recorded = recorded_decisions(rows)
    return what_if(recorded.records, config), recorded


def what_if_text(rows: Iterable[tuple[int, str, bytes]], config_file: Path) -> str:
    """The report ``gpuroute replay --what-if FILE --db PATH`` prints; ``rows``
    are the log's (seq, type, body) in position order (the CLI reads the file)."""
    config = load_config(config_file)
    report, recorded = what_if_log(rows, config)
    lines = [render(report)]
    digest = config_digest(config)
    others = [d for d in recorded.recorded_digests if d != digest]
    if others:
        lines.append(f"recorded with config {', '.join(others)}; {config_file} is {digest}")
    if recorded.without_inputs:
        lines.append(f"skipped {recorded.without_inputs} job.advised without recorded inputs")
    if recorded.mismatches:
        lines.append(f"{len(recorded.mismatches)} decisions whose inputs could not be rebuilt:")
        lines += [f"  {m}" for m in recorded.mismatches]
    return "\n".join(lines) + "\n"
