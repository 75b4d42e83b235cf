"""What ``gpuroute doctor`` answers: one :class:`Check` per thing it looked at.

Each check is ``pass``, ``warn`` or ``fail`` with the evidence it saw (what
an operator would otherwise collect by hand: sizes, pids, log lines) and the
next step to take, written as a gpuroute (or system) command. A check that
could not run because something it needs is down is a ``fail`` that says
what could not be reached; the report is never cut short.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Status = Literal["pass", "warn", "fail"]
_MARK: dict[str, str] = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


class Check(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    """Dotted, stable: ``nats.reachable``, ``service.store``, ``model./models/sd.bin``."""
    status: Status
    summary: str
    """One sentence with the numbers."""
    evidence: list[str] = []
    next_step: str = ""
    """Empty on a pass."""


class DoctorReport(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    """No check failed (warnings allowed)."""
    checks: list[Check]
    unreachable: list[str] = []
    """What doctor could not reach (``nats``, ``store``...): its checks are fails."""

    @classmethod
    def of(cls, checks: list[Check]) -> DoctorReport:
        down = {c.name.split(".", 1)[0] for c in checks if "unreachable" in c.summary}
        unreachable = sorted(down)
        return cls(ok=all(c.status != "fail" for c in checks), checks=checks,
                   unreachable=unreachable)  # fmt: skip

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


def passed(name: str, summary: str, evidence: list[str] | None = None) -> Check:
    return Check(name=name, status="pass", summary=summary, evidence=evidence or [])


def warned(name: str, summary: str, next_step: str, evidence: list[str] | None = None) -> Check:
    return Check(name=name, status="warn", summary=summary, evidence=evidence or [],
                 next_step=next_step)  # fmt: skip


def failed(name: str, summary: str, next_step: str, evidence: list[str] | None = None) -> Check:
    return Check(name=name, status="fail", summary=summary, evidence=evidence or [],
                 next_step=next_step)  # fmt: skip


def render_text(report: DoctorReport) -> str:
    """The report for a terminal: one line per check, its evidence indented,
    then the next step; the failures again at the end."""
    lines: list[str] = []
    for c in report.checks:
        lines.append(f"{_MARK[c.status]}  {c.name}: {c.summary}")
        lines += [f"      {e}" for e in c.evidence]
        if c.next_step:
            lines.append(f"      next: {c.next_step}")
    fails = report.failed()
    warns = sum(c.status == "warn" for c in report.checks)
    lines.append("")
    if fails:
        lines.append(f"{len(fails)} failed, {warns} warnings. Start with:")
        lines += [f"  {c.name}: {c.next_step}" for c in fails]
    else:
        lines.append(f"all checks passed ({warns} warnings)")
    return "\n".join(lines) + "\n"
