"""Provider adapters: what the adapters service stores and answers.

Events (stored; key = the job id, else the provider's remote id, else the provider):

    adapter.submitted        a job was handed to a provider, refused, or the call failed
    adapter.status_changed   a poll or cancel saw a job's status differ from the last seen
    adapter.health_checked   a provider's health was checked

Request/reply (``nats.micro`` service ``gpuroute-adapters``, subjects ``gpuroute.adapters.*``
below): each request Struct names its reply Struct. A failure is a service error whose code
is HTTP-like (400 bad input, 404 unknown job, 429 rate limited, 502 provider error, 504
provider timeout) and whose description is an :class:`AdapterFailure` as one line of JSON.
Requests are lenient (an older service skips newer fields); the ``*Body`` types are the
strict forms the gateway decodes HTTP bodies with (``NoBody`` for the routes that take
none), derived with ``schemas.strict.strict``, so an unknown field in any HTTP body is a
400 naming it. A job handed to a provider (:class:`ProviderJob`) is the one job spec,
``schemas.jobs.JobSpec``, plus the provider's input.

The ``[adapters]`` config section is in ``schemas/adapter_settings.py``. No type here ever
holds a secret value.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal

import msgspec

from schemas import limits
from schemas.envelope import event_type
from schemas.jobs import JobSpec
from schemas.strict import strict
from schemas.subjects import command

ProviderName = Literal["runpod", "huggingface", "replicate", "modal"]
Seed = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # a 64-bit integer
PROVIDERS: Final[tuple[ProviderName, ...]] = ("runpod", "huggingface", "replicate", "modal")

# "done" is success (the dry-run answer reads status "done"); "unknown" is a
# provider status we have no mapping for: the provider's word is kept in raw_status.
Status = Literal[
    "queued", "starting", "running", "done", "failed", "cancelled", "timed_out", "unknown"
]
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"done", "failed", "cancelled", "timed_out"})

# ready: can take work now; scaled_to_zero / starting: after a cold start;
# paused / down: will not take it; dry_run: no live provider behind the adapter.
HealthState = Literal["ready", "scaled_to_zero", "starting", "paused", "down", "dry_run", "unknown"]
DryRunReason = Literal["dry_run_mode", "flag_off", "missing_token", "missing_setting"]

SUBJECT_PREFIX: Final = "gpuroute.adapters."
HEALTH: Final = command(
    "gpuroute.adapters.health",
    "health of every provider, or one (publishes adapter.health_checked).",
    clients=("gateway",),
    request="HealthRequest",
    reply="HealthResponse",
)
SUBMIT: Final = command(
    "gpuroute.adapters.submit",
    "submit a job to a provider (publishes adapter.submitted).",
    clients=("gateway", "scheduler"),  # the remote executor
    request="SubmitRequest",
    reply="SubmitResult",
)
POLL: Final = command(
    "gpuroute.adapters.poll",
    "status, artifacts and logs of a remote job (publishes adapter.status_changed on a change).",
    clients=("gateway", "scheduler"),  # the remote executor
    request="PollRequest",
    reply="PollResult",
)
CANCEL: Final = command(
    "gpuroute.adapters.cancel",
    "cancel a remote job.",
    clients=("gateway", "scheduler"),  # the remote executor
    request="CancelRequest",
    reply="CancelResult",
)
PROVIDERS_SUBJECT: Final = command(
    "gpuroute.adapters.providers",
    "every adapter: live or dry-run and why, secrets and settings missing to go live.",
    clients=("gateway",),
    request="ProvidersRequest",
    reply="ProvidersResponse",
)
SIMULATE: Final = command(
    "gpuroute.adapters.simulate",
    "a seeded, deterministic transcript of a job at a provider.",
    clients=("gateway",),
    request="SimulateRequest",
    reply="SimTranscript",
)


# --- the job contract: a job and the results of each call ---------------------------


class ProviderJob(JobSpec, frozen=True, kw_only=True):
    """A job to hand to a provider: the job spec every service takes
    (``schemas.jobs.JobSpec``: kind, sizes, steps, model, ...) plus the provider input.

    ``input`` is the provider's model input, sent as the provider expects it (RunPod
    ``{"input": ...}``, Replicate ``{"input": ...}``, the HF endpoint's JSON body, the
    Modal submit route's JSON body). ``target`` overrides the configured model/endpoint
    where the provider allows it (Replicate: ``owner/name`` or ``owner/name:version``).
    ``seed`` names the dry-run id; without it the id is derived from the input, so the
    same job always gets the same dry-run answer.
    """

    input: dict[str, Any] = {}
    job_id: str | None = None
    target: str | None = None
    seed: Seed | None = None


ProviderJobBody = strict(ProviderJob)
"""A job as a client sends it over HTTP: an unknown field is an error."""


class SubmitResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    ok: bool
    provider: str
    dry_run: bool
    id: str | None = None
    status: Status | None = None
    raw_status: str | None = None
    reason: str | None = None
    job_id: str | None = None


class SavedArtifact(msgspec.Struct, frozen=True, kw_only=True):
    """An output the provider answered inline (base64 in JSON, raw bytes), saved under
    ``<data-dir>/artifacts/<provider>/<job>/<name>`` (file mode 0600). ``path`` is
    absolute on the adapters service's host; ``size`` in bytes; ``sha256`` hex."""

    path: str
    size: int
    content_type: str
    sha256: str


class PollResult(msgspec.Struct, frozen=True, kw_only=True):
    """``artifacts``: output URLs plus the paths of the outputs saved from inline data
    (``saved`` describes those); inline data in ``output`` is replaced by its path."""

    provider: str
    id: str
    status: Status
    dry_run: bool
    artifacts: list[str]
    logs: list[str]
    raw_status: str | None = None
    output: Any = None
    error: str | None = None
    progress: float | None = None  # 0.0 .. 1.0 where the provider reports it
    saved: list[SavedArtifact] = []

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class CancelResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``ok``: the provider accepted the cancel; ``status`` says where the job now is
    (a job that had already finished keeps its final status)."""

    ok: bool
    provider: str
    id: str
    dry_run: bool
    status: Status | None = None
    raw_status: str | None = None
    reason: str | None = None


class HealthResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``error`` (an adapter error class name) is set when the check itself failed."""

    ok: bool
    provider: str
    dry_run: bool
    state: HealthState
    raw_state: str | None = None
    queue_depth: int | None = None
    workers: dict[str, int] = msgspec.field(default_factory=dict)
    reason: str | None = None
    error: str | None = None


class ProviderDescription(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a provider is live, and if not, every reason and what to do about it."""

    provider: str
    mode: Literal["live", "dry_run"]
    reasons: list[DryRunReason]  # empty when live
    required_secrets: list[str]
    missing_secrets: list[str]
    secret_sources: dict[str, str]  # dotted key -> "env:NAME" or "file:PATH", never a value
    env_vars: dict[str, list[str]]  # dotted key -> variables read, highest precedence first
    missing_settings: list[str]
    hint: str


class AdapterFailure(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A failed adapter call, as the service error description (one line of JSON) and
    as the gateway's error body. ``error`` reads ``"<provider> <call>: <reason>"``;
    ``kind`` is the adapter error class; ``provider_status`` the provider's HTTP status."""

    error: str
    kind: str
    provider: str
    call: str
    reason: str
    provider_status: int | None = None
    retry_after_s: float | None = None


def encode_failure(failure: AdapterFailure) -> str:
    """``failure`` as one line of ASCII JSON: the form a NATS header value can carry."""
    return json.dumps(msgspec.to_builtins(failure), ensure_ascii=True, separators=(",", ":"))


_FAILURE = msgspec.json.Decoder(AdapterFailure)


def decode_failure(description: str) -> AdapterFailure | None:
    """The ``AdapterFailure`` in a service error description; None for any other error
    (a 400 from request validation, a 503 when no service answers, ...)."""
    if not description.startswith("{"):
        return None
    try:
        return limits.decode(_FAILURE, description, max_bytes=limits.MAX_EVENT_BYTES,
                             what="adapter failure")  # fmt: skip
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError):
        return None


# --- sim mode ------------------------------------------------------------------------

SimPhase = Literal["queued", "cold_start", "running", "progress", "done", "failed"]


SIM_MAX_SECONDS: Final = 86_400.0
"""The longest queue wait or cold start a profile may give (a day)."""
SIM_MIN_UNITS_PER_S: Final = 0.001
SIM_MAX_UNITS_PER_S: Final = 1_000_000.0
SIM_MAX_UNITS: Final = 10_000_000
"""The largest job (``job.input["steps"]``, else the spec's ``steps``) the simulation
takes. With the bounds above, every time in a transcript stays below 2**53 ms: no
overflow, no precision loss."""

SimSeconds = Annotated[float, msgspec.Meta(ge=0, le=SIM_MAX_SECONDS)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
UnitsPerSecond = Annotated[float, msgspec.Meta(ge=SIM_MIN_UNITS_PER_S, le=SIM_MAX_UNITS_PER_S)]


class ProviderProfile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a provider behaves, for the simulation. Times in seconds.

    Decoding enforces every bound (JSON ``1e309`` is infinity and is refused like any
    value past a bound, with the field's path); :meth:`problems` checks the same bounds
    for a profile built in code, where msgspec does not check them."""

    queue_s: tuple[SimSeconds, SimSeconds]  # uniform range of the wait for a worker
    cold_start_s: tuple[SimSeconds, SimSeconds]  # uniform range of a cold start
    warm_probability: Probability  # chance that a warm worker is free (no cold start)
    failure_rate: Probability  # chance that the job fails while running
    units_per_s: UnitsPerSecond  # throughput on a warm worker

    def problems(self) -> list[str]:
        """Every bound this profile breaks (NaN breaks them all); empty when usable."""
        found = []
        for name in ("queue_s", "cold_start_s"):
            low, high = getattr(self, name)
            if not 0 <= low <= high <= SIM_MAX_SECONDS:
                found.append(f"{name} must be 0 <= low <= high <= {SIM_MAX_SECONDS:g}")
        for name in ("warm_probability", "failure_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                found.append(f"{name} must lie in [0, 1]")
        if not SIM_MIN_UNITS_PER_S <= self.units_per_s <= SIM_MAX_UNITS_PER_S:
            found.append(
                f"units_per_s must lie in [{SIM_MIN_UNITS_PER_S:g}, {SIM_MAX_UNITS_PER_S:g}]"
            )
        return found


class SimEvent(msgspec.Struct, frozen=True, kw_only=True):
    at_ms: int
    phase: SimPhase
    detail: str
    progress_pct: int | None = None


class SimDecision(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Literal["done", "failed"]
    cold_start: bool
    total_ms: int
    reason: str


class SimTranscript(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    seed: int
    job_id: str | None
    units: int
    profile: ProviderProfile
    events: list[SimEvent]
    decision: SimDecision
    dry_run: bool = True


# --- requests and replies on gpuroute.adapters.* --------------------------------------


class HealthRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Check one provider, or every provider when ``provider`` is absent."""

    provider: ProviderName | None = None


HealthBody = strict(HealthRequest)


class HealthResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A provider that is down or failed to answer is a result with ``ok: false``,
    not an error: reporting it is what a health check is for."""

    ok: bool = True
    results: list[HealthResult]


class SubmitRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Replied with :class:`SubmitResult`."""

    provider: ProviderName
    job: ProviderJob


SubmitBody = strict(SubmitRequest)


class NoBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of a route that takes none (poll, cancel, providers): absent or ``{}``;
    any field in it is an unknown field, a 400 naming it, never silently ignored."""


class PollRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Replied with :class:`PollResult`. ``job_id`` is recorded on the status event
    when this service did not see the submit."""

    provider: ProviderName
    id: Annotated[str, msgspec.Meta(min_length=1)]
    job_id: str | None = None


class PollQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The query string of the poll and cancel routes."""

    provider: ProviderName
    job_id: str | None = None


class CancelRequest(PollRequest, frozen=True, kw_only=True):
    """Replied with :class:`CancelResult`."""


class ProvidersRequest(msgspec.Struct, frozen=True, kw_only=True):
    pass


class ProvidersResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``flags_position``: store position of the last ``flags.changed`` event applied
    (0: none yet). ``secrets_file_state``: ``not_set`` (env only), ``missing`` or
    ``loaded``."""

    ok: bool = True
    flag: str
    live_calls_enabled: bool
    flags_position: int
    secrets_file: str | None
    secrets_file_state: Literal["not_set", "missing", "loaded"]
    providers: list[ProviderDescription]


class SimulateRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Replied with :class:`SimTranscript`; ``profile`` replaces the provider's default."""

    provider: ProviderName
    job: ProviderJob
    seed: Seed
    profile: ProviderProfile | None = None


SimulateBody = strict(SimulateRequest)


# --- events --------------------------------------------------------------------------


class AdapterSubmitted(msgspec.Struct, frozen=True, kw_only=True):
    """``ok`` false with ``reason``: refused (dry-run without a token, paused endpoint);
    with ``error`` too: the call failed (``error`` is the adapter error class).
    ``instance``: the adapters service instance that made the call (a restarted or
    second instance knows from it that a job's in-process state is elsewhere)."""

    provider: str
    dry_run: bool
    ok: bool
    remote_id: str | None = None
    job_id: str | None = None
    status: str | None = None  # one of Status
    raw_status: str | None = None
    reason: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    instance: str | None = None


MAX_EVENT_OUTPUT_BYTES: Final = 32 * 1024
"""The largest job output recorded in an ``adapter.status_changed`` event (only for
providers whose result exists nowhere else, i.e. Hugging Face); a larger one is saved
as an artifact file instead."""


class AdapterStatusChanged(msgspec.Struct, frozen=True, kw_only=True):
    """``previous`` is None when this service had not seen the job before. ``call``:
    poll, cancel, or ``inference`` (a Hugging Face request ended in the background).
    ``output`` is recorded only where the provider cannot be asked again (Hugging Face),
    at most ``MAX_EVENT_OUTPUT_BYTES``; ``saved`` lists outputs saved as files."""

    provider: str
    dry_run: bool
    remote_id: str
    status: str  # one of Status
    previous: str | None = None
    job_id: str | None = None
    raw_status: str | None = None
    call: str = "poll"  # poll or cancel
    artifacts: list[str] = []
    error: str | None = None
    progress: float | None = None
    saved: list[SavedArtifact] = []
    output: Any = None
    instance: str | None = None


class AdapterHealthChecked(msgspec.Struct, frozen=True, kw_only=True):
    """``remote_id``: the provider-side resource checked (RunPod endpoint id, HF
    ``namespace/name``, Replicate model/version/deployment, Modal app URL)."""

    provider: str
    dry_run: bool
    ok: bool
    state: str  # one of HealthState
    remote_id: str | None = None
    raw_state: str | None = None
    queue_depth: int | None = None
    reason: str | None = None
    error: str | None = None
    latency_ms: float | None = None


AdapterSubmittedEvent = event_type(
    "adapter.submitted",
    AdapterSubmitted,
    "A job was handed to a GPU provider (or refused).",
    publishers=("adapters",),
    readers=("adapters",),
)
AdapterStatusChangedEvent = event_type(
    "adapter.status_changed",
    AdapterStatusChanged,
    "A provider job's status changed.",
    publishers=("adapters",),
    readers=("adapters",),
)
AdapterHealthCheckedEvent = event_type(
    "adapter.health_checked",
    AdapterHealthChecked,
    "A GPU provider's health was checked.",
    publishers=("adapters",),
)
