"""What-if replay: re-run recorded decisions under another config.

Each :class:`~services.advisor.decision.AdviceRecord` holds the spec, the
context (telemetry, flags, registry, queue depth) and the decision made.
:func:`what_if` re-runs ``rules.decide`` on the recorded spec and context with
an alternative config (thresholds, constants and ``price_overrides``, e.g. read
with ``config.load_config(FILE)``) and reports which decisions change and the
estimated cost difference. Pure: same records and config, same report.

A decision changes when its target, provider or rule changes. Costs are the
decisions' own ``estimate_usd`` (energy for local/CPU/wait, the provider
estimate for remote); the difference is new minus old.

:func:`what_if_one` answers the same question for one job with the thresholds
and prices an operator types (``POST /api/advisor/whatif``): the advisor's
config with those put in (:func:`what_if_config`), the record's decision re-run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from schemas.advisor import Decision, RuleThresholds, WhatIfAnswer
from services.advisor.config import AdvisorConfig, PriceOverride, config_digest
from services.advisor.decision import AdviceRecord
from services.advisor.errors import WhatIfRequestError
from services.advisor.rules import Decider


class DecisionChange(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    old_target: str
    old_provider: str | None
    old_rule: str
    new_target: str
    new_provider: str | None
    new_rule: str
    old_estimate_usd: float | None
    new_estimate_usd: float | None
    new_reason: str


class WhatIfReport(msgspec.Struct, frozen=True, kw_only=True):
    """``total`` records re-run, ``changed`` of them decided differently.

    ``cost_before_usd``/``cost_after_usd`` sum every record's estimate;
    ``cost_difference_usd`` is after minus before (negative: cheaper).
    """

    total: int
    changed: int
    changes: list[DecisionChange]
    cost_before_usd: float
    cost_after_usd: float
    cost_difference_usd: float
    config_digest: str


def what_if(records: Iterable[AdviceRecord], config: AdvisorConfig) -> WhatIfReport:
    """Re-run each record's decision with ``config``; see the module docstring."""
    changes: list[DecisionChange] = []
    total = 0
    before = after = 0.0
    for rec in records:
        total += 1
        new = rerun(rec, config)
        old = rec.decision
        before += old.estimate_usd or 0.0
        after += new.estimate_usd or 0.0
        if new.placement != old.placement:
            changes.append(
                DecisionChange(
                    job_id=rec.job_id,
                    old_target=old.target,
                    old_provider=old.provider_id,
                    old_rule=old.rule,
                    new_target=new.target,
                    new_provider=new.provider_id,
                    new_rule=new.rule,
                    old_estimate_usd=old.estimate_usd,
                    new_estimate_usd=new.estimate_usd,
                    new_reason=new.reason,
                )
            )
    digits = config.pricing.round_digits
    return WhatIfReport(
        total=total,
        changed=len(changes),
        changes=changes,
        cost_before_usd=round(before, digits),
        cost_after_usd=round(after, digits),
        cost_difference_usd=round(after - before, digits),
        config_digest=config_digest(config),
    )


def rerun(record: AdviceRecord, config: AdvisorConfig) -> Decision:
    """The record's decision made again with ``config`` (without details, as recorded)."""
    return Decider(record.context, config).decide(record.spec, details=False)


def what_if_config(
    config: AdvisorConfig, thresholds: RuleThresholds | None, prices: Mapping[str, float]
) -> AdvisorConfig:
    """``config`` with ``thresholds`` as its ``[rules]`` (None: its own) and, after
    its own ``[[price_overrides]]``, one override per provider in ``prices``
    (USD per hour for every GPU of that provider)."""
    added = tuple(PriceOverride(provider=p, price_usd=usd) for p, usd in sorted(prices.items()))
    return msgspec.structs.replace(
        config,
        rules=config.rules if thresholds is None else thresholds,
        price_overrides=config.price_overrides + added,
    )


def what_if_one(
    record: AdviceRecord,
    config: AdvisorConfig,
    thresholds: RuleThresholds | None,
    prices: Mapping[str, float],
) -> WhatIfAnswer:
    """Re-run one recorded decision with ``config`` changed by ``thresholds`` and
    ``prices`` (:func:`what_if_config`). Raises :class:`WhatIfRequestError` when
    ``prices`` names a provider the record's context did not have registered: its
    override would change nothing and read as "same decision"."""
    registered = record.context.registry.providers
    unknown = sorted(set(prices) - set(registered))
    if unknown:
        known = ", ".join(sorted(registered)) or "none"
        raise WhatIfRequestError(
            record.job_id,
            f"price_overrides names provider {unknown[0]!r}, which was not registered when"
            f" job {record.job_id!r} was advised (registered then: {known})"
            f" - at `$.price_overrides`",
        )
    changed_config = what_if_config(config, thresholds, prices)
    old, new = record.decision, rerun(record, changed_config)
    difference = None
    if old.estimate_usd is not None and new.estimate_usd is not None:
        difference = round(new.estimate_usd - old.estimate_usd, config.pricing.round_digits)
    return WhatIfAnswer(
        job_id=record.job_id,
        changed=new.placement != old.placement,
        recorded=old,
        new=new,
        cost_difference_usd=difference,
        thresholds=changed_config.rules,
        price_overrides=dict(sorted(prices.items())),
        config_digest=config_digest(changed_config),
        recorded_config_digest=record.config_digest,
    )


def _where(target: str, provider: str | None) -> str:
    return f"{target}:{provider}" if provider else target


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:.4f}"


def render(report: WhatIfReport) -> str:
    """The report as an operator reads it in a terminal (``gpuroute replay --what-if``)."""
    lines = [
        f"what-if (config {report.config_digest}): {report.changed} of {report.total}"
        f" decisions change",
        f"estimated cost: ${report.cost_before_usd:.4f} -> ${report.cost_after_usd:.4f}"
        f" (difference {report.cost_difference_usd:+.4f} USD)",
    ]
    for c in report.changes:
        lines.append(
            f"  {c.job_id}: {_where(c.old_target, c.old_provider)} ({c.old_rule})"
            f" -> {_where(c.new_target, c.new_provider)} ({c.new_rule});"
            f" {_usd(c.old_estimate_usd)} -> {_usd(c.new_estimate_usd)}"
        )
    return "\n".join(lines)
