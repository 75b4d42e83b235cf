"""The ``command`` executor: a program with arguments, never a shell.

Payload: an argv list (``["echo", "hi"]``) or ``{"argv": [...]}``.

- Allow-list: ``argv[0]`` must be one of ``[scheduler.command] allow``, matched by
  the name as written or by the resolved absolute path. Each entry is resolved
  once, when the executor is built; the resolved path is what runs, so a later
  change of ``PATH`` cannot swap the program. ``python`` means this interpreter.
- Environment: only ``PATH``, ``HOME``, ``LANG``, ``LC_ALL``, ``TZ`` and
  ``GPUROUTE_JOB_ID`` / ``GPUROUTE_ATTEMPT`` / ``GPUROUTE_ARTIFACTS`` reach the
  program: gpuroute's own secrets (provider tokens) stay out of its reach.
- Output: stdout and stderr are reported line by line through
  :meth:`Progress.log`, each cut at ``max_line_bytes``, at most ``max_lines``
  per attempt and ``lines_per_s`` sustained (bursts of ``lines_burst``); what is
  dropped is counted and reported in one line when the program ends.
- The program leads its own process group. Cancellation (or the scheduler's
  timeout) sends SIGTERM to the whole group, then SIGKILL after
  ``kill_grace_s``; after a normal exit the group is killed too, so no
  background child outlives its job holding the pipes open.
- Outcome: exit 0 succeeded; a death by signal or an exit code in
  ``retryable_exit_codes`` is a retryable failure; any other exit is not.
  Files the program leaves in ``$GPUROUTE_ARTIFACTS`` are its artifacts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from schemas.scheduler_settings import CommandSettings
from services.scheduler.errors import SchedulerError

from . import artifacts
from .base import Executor, Outcome, Progress, Run
from .payloads import BadPayload, convert

Arg = Annotated[str, msgspec.Meta(max_length=32_768)]
Argv = Annotated[list[Arg], msgspec.Meta(min_length=1, max_length=4096)]
_KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
_CHUNK = 65_536
_SIGNALS = frozenset(s.value for s in signal.Signals)


class CommandPayload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    argv: Argv


class CommandConfigError(SchedulerError):
    """The ``[scheduler.command]`` table cannot work (a workdir outside the data dir)."""


def _resolve(program: str) -> str | None:
    if program == "python":
        return sys.executable
    return shutil.which(program)


class CommandExecutor(Executor):
    name = "command"

    def __init__(self, settings: CommandSettings, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir.resolve()
        self.workdir: Path | None = None
        if settings.workdir:
            workdir = (self.data_dir / settings.workdir).resolve()
            if not workdir.is_relative_to(self.data_dir):
                raise CommandConfigError(
                    f"[scheduler.command] workdir {settings.workdir!r} is outside the "
                    f"data directory {self.data_dir}"
                )
            self.workdir = workdir
        self.allowed: dict[str, str] = {}
        self.unresolved: list[str] = []
        for entry in settings.allow:
            path = _resolve(entry)
            if path is None:
                self.unresolved.append(entry)
            else:
                self.allowed[entry] = path

    def program(self, argv0: str) -> str:
        """The absolute path ``argv0`` runs as; :class:`BadPayload` if not allowed."""
        if argv0 in self.allowed:
            return self.allowed[argv0]
        if os.path.isabs(argv0):
            real = os.path.realpath(argv0)
            for path in self.allowed.values():
                if os.path.realpath(path) == real:
                    return path
        allowed = ", ".join(sorted(self.allowed)) or "nothing"
        raise BadPayload(
            f"command payload: program {argv0!r} is not on the allow-list "
            f"([scheduler.command] allow: {allowed})"
        )

    async def health(self) -> dict[str, Any]:
        return {"ok": bool(self.allowed), "allow": sorted(self.allowed),
                "unresolved": self.unresolved}  # fmt: skip

    async def run(self, run: Run, progress: Progress) -> Outcome:
        try:
            argv = self._argv(run.payload)
            program = self.program(argv[0])
        except BadPayload as e:
            return Outcome("failed", str(e))
        cwd = self.workdir or run.workdir
        cwd.mkdir(mode=0o700, parents=True, exist_ok=True)
        out = artifacts.folder(run)
        env = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}
        env |= {"GPUROUTE_JOB_ID": run.job_id, "GPUROUTE_ATTEMPT": str(run.attempt),
                "GPUROUTE_ARTIFACTS": str(out)}  # fmt: skip
        try:
            proc = await asyncio.create_subprocess_exec(
                program, *argv[1:], cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            return Outcome("failed", f"cannot start {argv[0]!r}: {e}", retryable=True)
        await progress.remote(f"pid:{proc.pid}")
        lines = _Lines(self.settings, progress)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            await asyncio.gather(
                lines.pump(proc.stdout, "stdout"), lines.pump(proc.stderr, "stderr"), proc.wait()
            )
        except BaseException:
            await self._stop(proc)
            raise
        finally:
            _kill_group(proc.pid, signal.SIGKILL)
        await lines.summary()
        return self._outcome(argv[0], proc.returncode, lines.last_stderr, run)

    def _argv(self, payload: Any) -> list[str]:
        if isinstance(payload, list):
            payload = {"argv": payload}
        return list(convert(payload, CommandPayload, "command").argv)

    def _outcome(self, argv0: str, code: int | None, last_err: str, run: Run) -> Outcome:
        code = -1 if code is None else code
        if code == 0:
            return Outcome("succeeded", exit_code=0, artifacts=artifacts.collect(run))
        if code < 0:
            name = signal.Signals(-code).name if -code in _SIGNALS else str(-code)
            reason, retryable = f"{argv0} was killed by {name}", True
        else:
            reason = f"{argv0} exited with code {code}"
            retryable = code in self.settings.retryable_exit_codes
        if last_err:
            reason += f": {last_err}"
        return Outcome("failed", reason, retryable=retryable, exit_code=code)

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM to the group, SIGKILL after the grace (or at once if cancelled again)."""
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.settings.kill_grace_s)
        except (TimeoutError, asyncio.CancelledError):
            pass
        finally:
            _kill_group(proc.pid, signal.SIGKILL)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


class _Lines:
    """Splits a stream into bounded lines and reports them within the rate and count."""

    def __init__(self, settings: CommandSettings, progress: Progress) -> None:
        self.s = settings
        self.progress = progress
        self.sent = 0
        self.dropped = 0
        self.tokens = float(settings.lines_burst)
        self.refilled = time.monotonic()
        self.last_stderr = ""

    async def pump(self, stream: asyncio.StreamReader, name: Literal["stdout", "stderr"]) -> None:
        pending, skipping = b"", False
        while chunk := await stream.read(_CHUNK):
            *complete, pending = (pending + chunk).split(b"\n")
            for raw in complete:
                if not skipping:
                    await self.line(raw, name)
                skipping = False
            if len(pending) > self.s.max_line_bytes:
                if not skipping:  # a line with no end in sight: report its start once
                    await self.line(pending, name)
                pending, skipping = b"", True
        if pending and not skipping:
            await self.line(pending, name)

    async def line(self, raw: bytes, name: Literal["stdout", "stderr"]) -> None:
        cut = len(raw) > self.s.max_line_bytes
        text = raw[: self.s.max_line_bytes].decode("utf-8", "replace").rstrip("\r")
        text += "...[cut]" if cut else ""
        if name == "stderr" and text.strip():
            self.last_stderr = text[:200]
        now = time.monotonic()
        refill = (now - self.refilled) * self.s.lines_per_s
        self.tokens = min(self.s.lines_burst, self.tokens + refill)
        self.refilled = now
        if self.sent >= self.s.max_lines or self.tokens < 1:
            self.dropped += 1
            return
        self.tokens -= 1
        self.sent += 1
        await self.progress.log(text, name)

    async def summary(self) -> None:
        if self.dropped:
            await self.progress.log(
                f"{self.dropped} output lines not reported (limits: {self.s.max_lines} lines, "
                f"{self.s.lines_per_s:g}/s, [scheduler.command])"
            )
