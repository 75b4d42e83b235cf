"""What-if over an event log: ``gpuroute replay --what-if FILE --db PATH``.

Runs on the rows of the store's SQLite file (no NATS; the CLI reads them). Every ``job.advised`` the
advisor published keeps :class:`~schemas.advisor.AdvisedInputs` in its
``inputs``: the spec, the store position its state had folded up to, and the
references of the context it used. Folding the log's followed events
(``state.FOLLOWED``) up to that position rebuilds the exact context; the
recorded telemetry sample id, registry version, flags and queue depth check
the rebuild. Each decision is then re-run with FILE's thresholds and prices
(``whatif.what_if``).

A ``job.advised`` without inputs (published by something else, or before
inputs were recorded: its ``inputs`` is ``{}`` or null), or one that does not
decode, is counted and skipped; one whose context cannot be rebuilt (a log cut short, say) is listed
as a mismatch and not re-run.

A ``[[price_overrides]]`` entry of FILE must name a provider the log registered
at some point (and, with ``gpu``, a GPU that provider offered at some point):
a typo would otherwise change nothing and read as "0 decisions change". One
that existed only before or after some decisions is fine: the decisions that
saw it are re-priced. Anything else is an :class:`UnknownOverride` naming the
file, the override and the id (``gpuroute`` prints it on one line, exit 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from schemas import decode_event
from schemas.advisor import AdvisedInputs, JobAdvised
from schemas.providers import ProviderUpserted
from services.advisor.config import AdvisorConfig, config_digest, load_config
from services.advisor.decision import AdviceRecord
from services.advisor.errors import UnknownOverride
from services.advisor.state import FOLLOWED, AdvisorEvent, AdvisorState, all_flags, apply, context
from services.advisor.whatif import WhatIfReport, render, what_if
from services.runtime.follow import subject_matches


class RecordedDecisions(msgspec.Struct, kw_only=True):
    """The decisions of a log with their rebuilt inputs."""

    records: list[AdviceRecord]
    without_inputs: int = 0
    mismatches: list[str] = []
    recorded_digests: list[str] = []
    providers_seen: dict[str, set[str]] = {}
    """Every provider id the log ever registered, with every GPU it ever offered."""


def _followed(subject: str) -> bool:
    return any(subject_matches(p, subject) for p in FOLLOWED)


def rebuild_problem(state: AdvisorState, inputs: AdvisedInputs) -> str | None:
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
    seen: dict[str, set[str]] = {}
    for seq, subject, body in rows:
        if subject == "job.advised":
            try:
                event = decode_event(body)
            except (msgspec.ValidationError, msgspec.DecodeError):
                event = None  # inputs another publisher wrote, not ours
            data = None if event is None else event.payload
            inputs = data.replayable if isinstance(data, JobAdvised) else None
            if event is None or inputs is None:
                without += 1
            else:
                advised.append((inputs.state_position, event.key, inputs))
        elif _followed(subject):
            payload = decode_event(body).payload
            followed.append((seq, payload))
            if isinstance(payload, ProviderUpserted):
                gpus = seen.setdefault(payload.profile.id, set())
                gpus.update(g.gpu for g in payload.profile.gpus)
    advised.sort(key=lambda a: a[0])  # stable: log order within one position
    result = RecordedDecisions(records=[], without_inputs=without, providers_seen=seen)
    state, i = AdvisorState(), 0
    for position, job_id, inputs in advised:
        while i < len(followed) and followed[i][0] <= position:
            state = apply(state, followed[i][1])
            i += 1
        assert inputs.decision is not None  # only replayable inputs were kept
        problem = rebuild_problem(state, inputs)
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


def check_overrides(config: AdvisorConfig, seen: dict[str, set[str]], source: str) -> None:
    """Raise :class:`UnknownOverride` for the first override of ``config`` whose
    provider (or GPU) is not in ``seen`` (``RecordedDecisions.providers_seen``)."""
    for i, o in enumerate(config.price_overrides):
        where = f"[[price_overrides]] #{i + 1} (at `$.price_overrides[{i}]`)"
        gpus = seen.get(o.provider)
        if gpus is None:
            known = ", ".join(sorted(seen)) or "none"
            raise UnknownOverride(
                source,
                f"{where} names provider {o.provider!r}, which this log never registered"
                f" (providers in the log: {known})",
            )
        if o.gpu is not None and o.gpu not in gpus:
            raise UnknownOverride(
                source,
                f"{where} names GPU {o.gpu!r}, which provider {o.provider!r} never offered"
                f" in this log (its GPUs: {', '.join(sorted(gpus))})",
            )


def what_if_log(
    rows: Iterable[tuple[int, str, bytes]], config: AdvisorConfig, source: str = "<config>"
) -> tuple[WhatIfReport, RecordedDecisions]:
    """Re-run the log's decisions with ``config``; raises :class:`UnknownOverride`
    (naming ``source``) when an override names what the log never had."""
    recorded = recorded_decisions(rows)
    check_overrides(config, recorded.providers_seen, source)
    return what_if(recorded.records, config), recorded


def what_if_text(rows: Iterable[tuple[int, str, bytes]], config_file: Path) -> str:
    """The report ``gpuroute replay --what-if FILE --db PATH`` prints; ``rows``
    are the log's (seq, type, body) in position order (the CLI reads the file)."""
    config = load_config(config_file)
    report, recorded = what_if_log(rows, config, str(config_file))
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
