"""The ``[scheduler]`` config section: what the four executors need.

:class:`SchedulerSettings` is the section as ``services/runtime/config.py`` loads
it; each executor reads its own table (``[scheduler.comfyui]``,
``[scheduler.command]``, ``[scheduler.remote]``, ``[scheduler.synthetic]``).
Every table is strict (a typo is an error naming the key) and every field has a
working default. Units: seconds (``*_s``), bytes (``*_bytes``).

Every number is bounded above as well as below, so a typo or TOML's
``inf``/``nan`` is refused at load naming the key, and no setting can make a
wait infinite or a buffer unbounded.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

MAX_WAIT_S: Final = 86_400.0
"""The longest any one setting may make a wait (a day)."""
MAX_ARTIFACT_BYTES: Final = 4 * 1024**3
"""The largest single output an executor may be allowed to save (4 GiB)."""

Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_WAIT_S)]
Program = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class _Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the config tables: immutable, keyword-only, typos refused."""


class ComfyUISettings(_Settings, frozen=True):
    """A ComfyUI server reached over its HTTP API and websocket."""

    url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s]+$")] = "http://127.0.0.1:8188"
    request_timeout_s: Seconds = 30.0
    """Each HTTP call (``/prompt``, ``/history``, ``/view``, cancel calls)."""
    poll_s: Seconds = 1.0
    """How often ``/history/{prompt_id}`` is asked while the websocket is down."""
    max_artifact_bytes: Annotated[int, msgspec.Meta(ge=1, le=MAX_ARTIFACT_BYTES)] = 1024**3
    max_artifacts: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 256


class CommandSettings(_Settings, frozen=True):
    """Programs run with arguments, never through a shell.

    ``allow``: the programs that may run, each a name looked up on ``PATH`` when
    the executor starts (``echo``) or an absolute path. Nothing else runs; the
    word ``python`` means the interpreter running gpuroute itself, never a
    ``python`` found on ``PATH``. The default allows ``echo`` only.

    ``workdir``: a folder relative to the data directory to run every command
    in; empty (the default) runs each attempt in its own folder,
    ``<data-dir>/jobs/<job>/<attempt>``. A path that leaves the data directory
    is refused when the executor is built."""

    allow: list[Program] = msgspec.field(default_factory=lambda: ["echo"])
    workdir: str = ""
    max_line_bytes: Annotated[int, msgspec.Meta(ge=16, le=1024 * 1024)] = 4096
    """A longer output line is cut there and marked ``...[cut]``."""
    max_lines: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 10_000
    """Lines reported per attempt; the rest are counted and summed up in one line."""
    lines_per_s: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 50.0
    """Sustained rate of reported lines; bursts up to ``lines_burst``."""
    lines_burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 200
    kill_grace_s: Seconds = 2.0
    """After SIGTERM to the process group, how long before SIGKILL."""
    retryable_exit_codes: list[Annotated[int, msgspec.Meta(ge=1, le=255)]] = msgspec.field(
        default_factory=lambda: [75]
    )
    """Exit codes another attempt may fix (75: EX_TEMPFAIL). A death by signal is
    always retryable; any other non-zero exit is not."""


class RemoteSettings(_Settings, frozen=True):
    """Jobs handed to a provider through the adapters service over NATS."""

    call_timeout_s: Seconds = 30.0
    """Each submit/poll/cancel request to the adapters service."""
    poll_s: Seconds = 2.0
    """Between polls of a remote job."""
    max_poll_failures: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 5
    """Poll errors in a row after which the attempt fails (retryable)."""


class SyntheticSettings(_Settings, frozen=True):
    """Jobs that only wait: for demos and benchmarks (always ``dry_run``)."""

    max_duration_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_S)] = 3600.0
    max_steps: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


class SchedulerSettings(_Settings, frozen=True):
    """The ``[scheduler]`` section (the scheduler service adds its own fields)."""

    comfyui: ComfyUISettings = msgspec.field(default_factory=ComfyUISettings)
    command: CommandSettings = msgspec.field(default_factory=CommandSettings)
    remote: RemoteSettings = msgspec.field(default_factory=RemoteSettings)
    synthetic: SyntheticSettings = msgspec.field(default_factory=SyntheticSettings)
    # the scheduler service's own (docs/scheduler.md)
    max_running: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 8
    """Attempts this instance runs at once when budgets are off (with budgets on,
    the budget's ``max_running_jobs`` admits them)."""
    lease_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 15.0
    """A running job's lease: renewed every third of it; a job whose runner was
    silent this long is retried (or failed) by another instance."""
    advise_timeout_s: Seconds = 5.0
    """How long a submit waits for ``job.advised`` before answering without it."""
    retry_base_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_S)] = 1.0
    """Backoff before attempt n+1: ``retry_base_s * 2**(n-1)``, at most ``retry_max_s``."""
    retry_max_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_S)] = 60.0
