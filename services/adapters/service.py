"""The adapters service: the provider adapters behind NATS request/reply.

Endpoints (``nats.micro`` service ``gpuroute-adapters``; types in ``schemas/adapters.py``):

    gpuroute.adapters.submit     SubmitRequest    -> SubmitResult       adapter.submitted
    gpuroute.adapters.poll       PollRequest      -> PollResult         adapter.status_changed
    gpuroute.adapters.cancel     CancelRequest    -> CancelResult       adapter.status_changed
    gpuroute.adapters.health     HealthRequest    -> HealthResponse     adapter.health_checked
    gpuroute.adapters.providers  ProvidersRequest -> ProvidersResponse
    gpuroute.adapters.simulate   SimulateRequest  -> SimTranscript      (pure; no event)

A provider failure is a service error with an HTTP-like code (``failures.py``). A status
event is published when a poll or cancel sees a status other than the last one seen.

The runtime's follower (``services/runtime/follower.py``) folds ``flags.changed``,
``adapter.submitted`` and ``adapter.status_changed`` (``projection.py``) from the newest
snapshot (else position 0) through the store, then live, retrying with backoff while the
store does not answer. Until it has read the history, submit, poll and cancel answer a
prompt 503 (after ``READY_GRACE_S``): before that the service could not tell a live job
from a dry-run one, nor whether the flag is on.

Flags: ``features.enable_public_gpu_adapters`` arrives only as ``flags.changed`` events,
and decides where NEW submits (and health checks) go: live adapters while on, dry-run
stand-ins while off. A job keeps the mode it was submitted in: poll and cancel of a
job recorded live (``JobBook``, from the events) go to the live provider whatever the
flag says, so no live job ever gets a simulated answer; a dry-run poll of an id no one
submitted is a 404. The live adapters are built once, so switching the flag off leaves
Hugging Face requests in flight running.

Artifacts: inline outputs are saved under ``<data-dir>/artifacts`` (``artifacts.py``).

Secrets: read once at start from ``[adapters] secrets_file`` and the environment; a
malformed file stops the start with a one-line ``ConfigError`` naming file and key.
Every reply and event payload passes ``SecretStore.scrub`` on its way out.

Concurrency: ``nats.micro`` awaits a handler per message, in order; here each request
runs in its own task (at most ``MAX_IN_FLIGHT`` at once), so one slow provider does not
hold up the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, TypeVar

import aiohttp
import msgspec

from schemas import Event
from schemas.adapters import (
    CANCEL,
    HEALTH,
    MAX_EVENT_OUTPUT_BYTES,
    POLL,
    PROVIDERS_SUBJECT,
    SIMULATE,
    SUBMIT,
    AdapterHealthChecked,
    AdapterStatusChanged,
    AdapterSubmitted,
    CancelRequest,
    HealthRequest,
    HealthResponse,
    HealthResult,
    PollRequest,
    PollResult,
    ProvidersRequest,
    ProvidersResponse,
    SavedArtifact,
    SimulateRequest,
    SubmitRequest,
)
from schemas.flags import ENABLE_PUBLIC_GPU_ADAPTERS, FlagsChanged
from services.runtime.endpoints import InFlight, endpoint
from services.runtime.errors import BusError, ConfigError
from services.runtime.follower import Follower
from services.runtime.provider_errors import (
    ProviderError,
    ProviderUnavailableError,
    SecretsFileError,
    TransportError,
)
from services.runtime.secrets import SecretStore, load_secrets
from services.runtime.service import Service
from services.runtime.snapshots import Snapshots

from .artifacts import ArtifactStore
from .contract import ProviderAdapter
from .dryrun import DryRunAdapter
from .errors import JobConflictError, NotReadyError, UnknownJobError
from .failures import endpoint_error
from .options import AdapterOptions
from .projection import FOLLOWED, AdaptersProjection, AdaptersState
from .registry import AdapterRegistry, build_registry
from .sim import encode_transcript, simulate
from .tracking import JobBook

MAX_IN_FLIGHT = 256
READY_GRACE_S = 0.5
SecretsState = Literal["not_set", "missing", "loaded"]
P = TypeVar("P", bound=msgspec.Struct)


def load_secret_store(path: str | None) -> tuple[SecretStore, SecretsState]:
    """Secrets from ``path`` and the environment, and whether the file was there.
    A malformed file is a ``ConfigError`` naming the file and the key."""
    try:
        store = load_secrets(path)
    except SecretsFileError as e:
        problem = f"key {e.key!r}: {e.problem}" if e.key else e.problem
        raise ConfigError(f"secrets file {e.path}", problem) from e
    if path is None:
        return store, "not_set"
    return store, "loaded" if Path(path).exists() else "missing"


class AdaptersService(Service):
    name = "adapters"
    description = "GPU provider adapters: RunPod, Hugging Face, Replicate, Modal."

    async def setup(self) -> None:
        self.settings = self.config.adapters
        self.secrets, self.secrets_state = load_secret_store(self.settings.secrets_file)
        self.follower = Follower(
            self.bus, AdaptersProjection(instance=self.instance), FOLLOWED, log=self.log,
            snapshots=Snapshots(self.config.data_path / "snapshots"), on_apply=self._on_fold,
        )  # fmt: skip
        self._live_logged = False
        self._in_flight = InFlight(MAX_IN_FLIGHT, self.spawn)
        self._session = aiohttp.ClientSession()
        self._options = AdapterOptions(
            retry=self.settings.retry, session=self._session,
            known=lambda provider, remote_id: self._book.get(provider, remote_id),
            on_result=self._on_result,
            artifacts=ArtifactStore(self.config.data_path / "artifacts",
                                    self.settings.artifact_max_bytes),
        )  # fmt: skip
        # Built once: live where secrets and settings allow, whatever the flag says (they
        # serve poll and cancel of live jobs), and the dry-run stand-ins for flag off.
        self._live = self._build(enabled=True)
        self._off = self._build(enabled=False)
        self._simulated = {p: DryRunAdapter(p, "dry_run_mode") for p in self._off.providers}
        assert self.micro is not None
        routes: list[tuple[str, str, type[msgspec.Struct], Callable[..., Awaitable[object]]]] = [
            ("submit", SUBMIT, SubmitRequest, self.submit),
            ("poll", POLL, PollRequest, self.poll),
            ("cancel", CANCEL, CancelRequest, self.cancel),
            ("health", HEALTH, HealthRequest, self.health),
            ("providers", PROVIDERS_SUBJECT, ProvidersRequest, self.providers),
            ("simulate", SIMULATE, SimulateRequest, self.simulate),
        ]
        for name, subject, request_type, handler in routes:
            handle = endpoint(request_type, handler, in_flight=self._in_flight)
            await self.micro.add_endpoint(name=name, subject=subject, handler=handle)
        self.supervise(self.follower.run, "follow")  # resumes after its position
        fields = {"secrets_file": self.settings.secrets_file, "secrets": self.secrets_state}
        if self.secrets_state == "missing":
            self.log.warning("secrets file not found: providers without env secrets run dry",
                             extra={"fields": fields})  # fmt: skip
        self.log.info("adapters ready", extra={"fields": {**fields, **self._modes()}})

    async def teardown(self) -> None:
        follower: Follower[AdaptersState] | None = getattr(self, "follower", None)
        if follower is not None:
            await follower.close()
        for name in ("_live", "_off"):
            registry: AdapterRegistry | None = getattr(self, name, None)
            if registry is not None:
                await registry.aclose()
        session: aiohttp.ClientSession | None = getattr(self, "_session", None)
        if session is not None:
            await session.close()

    @property
    def flags(self) -> dict[str, bool]:
        return self.follower.state.flags

    @property
    def flags_position(self) -> int:
        """Store position of the last ``flags.changed`` folded (0: none)."""
        return self.follower.state.flags_position

    @property
    def _book(self) -> JobBook:
        return self.follower.state.book

    @property
    def live_calls_enabled(self) -> bool:
        return self.flags.get(ENABLE_PUBLIC_GPU_ADAPTERS, False)

    @property
    def registry(self) -> AdapterRegistry:
        """Where new submits and health checks go: the flag's mode."""
        return self._live if self.live_calls_enabled else self._off

    # -- registry, flags and the job book ---------------------------------------------

    def _build(self, *, enabled: bool) -> AdapterRegistry:
        return build_registry(
            self.settings, self.secrets, enable_public_gpu_adapters=enabled,
            options=self._options,
        )  # fmt: skip

    def _modes(self) -> dict[str, str]:
        return {d.provider: d.mode for d in self.registry.describe()}

    def _on_fold(self, seq: int, event: Event) -> None:
        if not isinstance(event.payload, FlagsChanged):
            return
        self.follower.state.flags_position = seq
        if self.live_calls_enabled == self._live_logged:
            return
        self._live_logged = self.live_calls_enabled
        self.log.info(
            f"{ENABLE_PUBLIC_GPU_ADAPTERS} is {'on' if self.live_calls_enabled else 'off'}: "
            "new submits go to the adapters of that mode; jobs keep theirs",
            extra={"fields": {"flags_position": seq, **self._modes()}},
        )

    async def _until_ready(self, provider: str, call: str) -> None:
        if await self.follower.wait_ready(READY_GRACE_S):
            return
        err = NotReadyError(
            provider, call,
            f"the adapters service is still loading its jobs and flags from the event store "
            f"({self.follower.progress()}); retry shortly",
        )  # fmt: skip
        raise endpoint_error(err) from None

    def _for_job(self, provider: str, remote_id: str, call: str) -> ProviderAdapter:
        """The adapter that serves ``call`` for a job: the mode it was submitted in.

        Known dry-run job: the simulation. Known live job: the live adapter, or a 409
        when the provider cannot go live any more. Unknown job: the current adapter when
        it is live (the provider knows its ids) or a refusal (missing token or setting);
        a 404 when it simulates, since every submit is in the book."""
        record = self._book.get(provider, remote_id)
        if record is not None and record.dry_run:
            return self._simulated[provider]
        if record is not None:
            live = self._live.get(provider)
            if live.dry_run:
                reasons = ", ".join(self._live_reasons(provider))
                raise endpoint_error(JobConflictError(
                    provider, call,
                    f"job {remote_id!r} was submitted live, but {provider} cannot go live now "
                    f"({reasons}); {provider} was not asked and no answer is simulated",
                )) from None  # fmt: skip
            return live
        current = self._adapter(provider)
        if isinstance(current, DryRunAdapter) and current.simulated:
            raise endpoint_error(UnknownJobError(
                provider, call, f"no job {remote_id!r} was submitted to {provider} "
                f"(dry run: {current.reason}; {provider} was not asked)",
            )) from None  # fmt: skip
        return current

    def _live_reasons(self, provider: str) -> list[str]:
        return next(list(d.reasons) for d in self._live.describe() if d.provider == provider)

    async def _on_result(self, result: PollResult) -> None:
        """A Hugging Face request ended outside any call: record it (see huggingface.py)."""
        output = result.output
        if len(msgspec.json.encode(output)) > MAX_EVENT_OUTPUT_BYTES:
            output = None  # saved as an artifact file instead
        await self._status_seen(
            result.provider, False, result.id, None, result.status, "inference",
            raw_status=result.raw_status, artifacts=result.artifacts, error=result.error,
            saved=result.saved, output=output,
        )  # fmt: skip

    # -- endpoints ------------------------------------------------------------------

    def _adapter(self, provider: str) -> ProviderAdapter:
        try:
            return self.registry.get(provider)
        except ProviderError as err:
            raise endpoint_error(err) from err

    async def submit(self, req: SubmitRequest) -> bytes:
        await self._until_ready(req.provider, "submit")
        adapter = self._adapter(req.provider)
        job_id = req.job.job_id
        started = self.clock.monotonic()
        try:
            result = await adapter.submit(req.job)
        except ProviderError as err:
            await self._emit(
                AdapterSubmitted(
                    provider=req.provider, dry_run=adapter.dry_run, ok=False, job_id=job_id,
                    reason=err.reason, error=type(err).__name__, latency_ms=self._ms(started),
                    instance=self.instance,
                ),
                key=job_id or req.provider,
            )  # fmt: skip
            raise endpoint_error(err) from err
        submitted = AdapterSubmitted(
            provider=req.provider, dry_run=result.dry_run, ok=result.ok, remote_id=result.id,
            job_id=job_id, status=result.status, raw_status=result.raw_status,
            reason=result.reason, latency_ms=self._ms(started), instance=self.instance,
        )  # fmt: skip
        self._book.submitted(submitted, self.clock.now())
        await self._emit(submitted, key=job_id or result.id or req.provider)
        return self._reply(result)

    async def poll(self, req: PollRequest) -> bytes:
        await self._until_ready(req.provider, "poll")
        adapter = self._for_job(req.provider, req.id, "poll")
        try:
            result = await adapter.poll(req.id)
        except ProviderError as err:
            raise endpoint_error(err) from err
        await self._status_seen(
            req.provider, adapter.dry_run, req.id, req.job_id, result.status, "poll",
            raw_status=result.raw_status, artifacts=result.artifacts, error=result.error,
            progress=result.progress, saved=result.saved,
        )  # fmt: skip
        return self._reply(result)

    async def cancel(self, req: CancelRequest) -> bytes:
        await self._until_ready(req.provider, "cancel")
        adapter = self._for_job(req.provider, req.id, "cancel")
        try:
            result = await adapter.cancel(req.id)
        except ProviderError as err:
            raise endpoint_error(err) from err
        if result.status is not None:
            await self._status_seen(
                req.provider, adapter.dry_run, req.id, req.job_id, result.status, "cancel",
                raw_status=result.raw_status, error=result.reason,
            )  # fmt: skip
        return self._reply(result)

    async def health(self, req: HealthRequest) -> bytes:
        names = [req.provider] if req.provider else list(self.registry.providers)
        results = await asyncio.gather(*(self._check(name) for name in names))
        return self._reply(HealthResponse(results=list(results)))

    async def providers(self, _: ProvidersRequest) -> bytes:
        return self._reply(
            ProvidersResponse(
                flag=ENABLE_PUBLIC_GPU_ADAPTERS,
                live_calls_enabled=self.live_calls_enabled,
                flags_position=self.flags_position,
                secrets_file=self.settings.secrets_file,
                secrets_file_state=self.secrets_state,
                providers=self.registry.describe(),
            )
        )

    async def simulate(self, req: SimulateRequest) -> bytes:
        try:
            transcript = simulate(req.provider, req.job, req.seed, profile=req.profile)
        except ProviderError as err:
            raise endpoint_error(err) from err
        return encode_transcript(transcript)

    # -- helpers ----------------------------------------------------------------------

    async def _check(self, provider: str) -> HealthResult:
        adapter = self._adapter(provider)
        started = self.clock.monotonic()
        try:
            result = await adapter.health()
        except ProviderError as err:
            down = isinstance(err, TransportError | ProviderUnavailableError)
            result = HealthResult(
                ok=False, provider=provider, dry_run=adapter.dry_run,
                state="down" if down else "unknown", reason=str(err), error=type(err).__name__,
            )  # fmt: skip
        await self._emit(
            AdapterHealthChecked(
                provider=provider,
                dry_run=result.dry_run,
                ok=result.ok,
                state=result.state,
                remote_id=getattr(self.settings, provider).target(),
                raw_state=result.raw_state,
                queue_depth=result.queue_depth,
                reason=result.reason,
                error=result.error,
                latency_ms=self._ms(started),
            ),
            key=provider,
        )
        return result

    async def _status_seen(
        self,
        provider: str,
        dry_run: bool,
        remote_id: str,
        job_id: str | None,
        status: str,
        call: str,
        *,
        raw_status: str | None,
        artifacts: list[str] | None = None,
        error: str | None = None,
        progress: float | None = None,
        saved: list[SavedArtifact] | None = None,
        output: object = None,
    ) -> None:
        """Record what a call saw; publish ``adapter.status_changed`` when the status
        differs from the last one recorded for the job."""
        if dry_run and status == "unknown":
            return  # a dry-run refusal ("missing token"): nothing was asked of a provider
        seen = AdapterStatusChanged(
            provider=provider, dry_run=dry_run, remote_id=remote_id, status=status,
            job_id=job_id, raw_status=raw_status, call=call, artifacts=artifacts or [],
            error=error, progress=progress, saved=saved or [], output=output,
            instance=self.instance,
        )  # fmt: skip
        before = self._book.changed(seen)
        if before is not None and before.status == status:
            return
        job_id = job_id or (before.job_id if before else None)
        previous = before.status if before else None
        await self._emit(
            msgspec.structs.replace(seen, previous=previous, job_id=job_id),
            key=job_id or remote_id,
        )

    def _reply(self, result: msgspec.Struct) -> bytes:
        return self.secrets.scrub(msgspec.json.encode(result))

    async def _emit(self, payload: P, *, key: str) -> None:
        """Publish ``payload`` (scrubbed). A failed publish is logged, not raised: the
        provider call already happened, and the caller must learn its result."""
        clean = msgspec.json.decode(self.secrets.scrub(msgspec.json.encode(payload)),
                                    type=type(payload))  # fmt: skip
        try:
            await self.bus.emit(clean, key=key)
        except BusError as e:
            self.log.error("adapter event not published", extra={"fields": {"error": str(e)}})

    def _ms(self, started: float) -> float:
        return round((self.clock.monotonic() - started) * 1000.0, 3)
