"""The dry-run adapter: the same contract as a live one, and never a network call.

It stands in for a provider that cannot or must not go live, and answers according
to why (``DryRunReason``):

- ``dry_run_mode`` (the provider's ``dry_run = true`` setting) and ``flag_off``
  (``features.enable_public_gpu_adapters`` is false): simulated answers.
  ``submit`` -> ``{ok: true, id: "mock-<provider>-<seed>", dry_run: true}`` and
  ``poll`` -> ``{status: "done", artifacts: [], logs: ["Simulated completion"],
  dry_run: true}``. ``flag_off`` adds a ``reason`` saying live calls are disabled.
- ``missing_token`` and ``missing_setting``: refusals. ``submit`` ->
  ``{ok: false, dry_run: true, reason: "missing token"}`` (or ``"missing setting:
  ..."``), and the other calls answer in kind.

``<seed>`` is the job's ``seed`` when given, else a number derived from the job's input
(SHA-256 of its canonical JSON), so the same input always gets the same answer, in
any process. A simulated ``poll`` or ``cancel`` of an id that is not of that form was
never issued by a dry-run adapter: ``UnknownJobError`` (404) naming it, never a
simulated ``done``. (Whether a well-formed id was actually submitted is the adapters
service's question; it knows every submit from the ``adapter.submitted`` events.)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from schemas.adapters import DryRunReason

from .contract import (
    AdapterBase,
    CancelResult,
    HealthResult,
    PollResult,
    ProviderJob,
    SubmitResult,
)
from .errors import UnknownJobError

SIMULATED_LOG: Final = "Simulated completion"
FLAG_OFF_REASON: Final = "live calls disabled: features.enable_public_gpu_adapters is false"
_MOCK_SEED = re.compile(r"-?[0-9]{1,20}")


def input_seed(job_input: dict[str, Any]) -> int:
    """A stable 32-bit number for ``job_input``: same input, same number, any process."""
    canonical = msgspec.json.encode(job_input, order="sorted")
    return int.from_bytes(hashlib.sha256(canonical).digest()[:4], "big")


def mock_id(provider: str, job: ProviderJob) -> str:
    seed = job.seed if job.seed is not None else input_seed(job.input)
    return f"mock-{provider}-{seed}"


def is_mock_id(provider: str, remote_id: str) -> bool:
    """Whether ``remote_id`` has the form a dry-run ``provider`` issues."""
    prefix = f"mock-{provider}-"
    return remote_id.startswith(prefix) and bool(_MOCK_SEED.fullmatch(remote_id[len(prefix) :]))


class DryRunAdapter(AdapterBase):
    """Deterministic stand-in for ``provider``; see the module docstring for answers."""

    def __init__(
        self, provider: str, reason: DryRunReason, *, missing_settings: Sequence[str] = ()
    ) -> None:
        super().__init__(provider, dry_run=True)
        self.reason = reason
        self._missing_settings = list(missing_settings)

    def __repr__(self) -> str:
        return f"DryRunAdapter(provider={self.provider!r}, reason={self.reason!r})"

    @property
    def simulated(self) -> bool:
        """True when calls are answered as if they worked; False when they are refused."""
        return self.reason in ("dry_run_mode", "flag_off")

    def _refusal(self) -> str:
        if self.reason == "missing_token":
            return "missing token"
        return "missing setting: " + ", ".join(self._missing_settings)

    def _note(self) -> str | None:
        return FLAG_OFF_REASON if self.reason == "flag_off" else None

    def _issued(self, call: str, remote_id: str) -> None:
        if not is_mock_id(self.provider, remote_id):
            raise UnknownJobError(
                self.provider, call,
                f"no job {remote_id!r} was submitted (dry run: ids read "
                f"mock-{self.provider}-<seed>)",
            )  # fmt: skip

    async def _submit(self, job: ProviderJob) -> SubmitResult:
        if not self.simulated:
            return SubmitResult(
                ok=False,
                provider=self.provider,
                dry_run=True,
                reason=self._refusal(),
                job_id=job.job_id,
            )
        return SubmitResult(
            ok=True,
            provider=self.provider,
            dry_run=True,
            id=mock_id(self.provider, job),
            status="queued",
            reason=self._note(),
            job_id=job.job_id,
        )

    async def _poll(self, remote_id: str) -> PollResult:
        if not self.simulated:
            return PollResult(
                provider=self.provider,
                id=remote_id,
                dry_run=True,
                status="unknown",
                artifacts=[],
                logs=[],
                error=self._refusal(),
            )
        self._issued("poll", remote_id)
        return PollResult(
            provider=self.provider,
            id=remote_id,
            dry_run=True,
            status="done",
            raw_status="simulated",
            artifacts=[],
            logs=[SIMULATED_LOG],
        )

    async def _cancel(self, remote_id: str) -> CancelResult:
        if not self.simulated:
            return CancelResult(
                ok=False,
                provider=self.provider,
                id=remote_id,
                dry_run=True,
                reason=self._refusal(),
            )
        self._issued("cancel", remote_id)
        return CancelResult(
            ok=True,
            provider=self.provider,
            id=remote_id,
            dry_run=True,
            status="cancelled",
            raw_status="simulated",
            reason=self._note(),
        )

    async def _health(self) -> HealthResult:
        if not self.simulated:
            return HealthResult(
                ok=False,
                provider=self.provider,
                dry_run=True,
                state="dry_run",
                reason=self._refusal(),
            )
        return HealthResult(
            ok=True,
            provider=self.provider,
            dry_run=True,
            state="dry_run",
            reason=self._note() or "dry-run mode",
        )
