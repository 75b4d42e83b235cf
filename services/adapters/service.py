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

Flags: ``features.enable_public_gpu_adapters`` arrives only as ``flags.changed`` events.
The service starts with the default (off: every adapter dry), then follows the store from
position 0 (history, then live; retrying with backoff while the store does not answer)
and rebuilds the registry whenever the flag's value changes. While it is off no live call
is made; switching it off cancels in-flight Hugging Face inference tasks.

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
from nats.micro.request import Request

from schemas import decode_event
from schemas.adapters import (
    CANCEL,
    HEALTH,
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
    ProvidersRequest,
    ProvidersResponse,
    SimulateRequest,
    SubmitRequest,
)
from schemas.flags import DEFAULTS, ENABLE_PUBLIC_GPU_ADAPTERS, FlagsChanged, apply_flags
from schemas.system import decode_stored
from services.runtime.endpoints import endpoint
from services.runtime.errors import BusError, ConfigError
from services.runtime.follow import FollowError, follow
from services.runtime.service import Service

from .contract import ProviderAdapter
from .errors import AdapterError, ProviderUnavailableError, SecretsFileError, TransportError
from .failures import endpoint_error
from .http import HttpOptions
from .registry import AdapterRegistry, build_registry
from .secrets import SecretStore, load_secrets
from .sim import encode_transcript, simulate
from .tracking import StatusBook

MAX_IN_FLIGHT = 256
FOLLOW_RETRY_MAX_S = 5.0
FLAGS_SUBJECT = "flags.changed"
SecretsState = Literal["not_set", "missing", "loaded"]
P = TypeVar("P", bound=msgspec.Struct)
MicroHandler = Callable[[Request], Awaitable[None]]


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
        self.flags = dict(DEFAULTS)
        self.flags_position = 0
        self._book = StatusBook()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._session = aiohttp.ClientSession()
        self.registry = self._build()
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
            handle = self._concurrent(endpoint(request_type, handler))
            await self.micro.add_endpoint(name=name, subject=subject, handler=handle)
        self.spawn(self._follow_flags(), "flags")
        fields = {"secrets_file": self.settings.secrets_file, "secrets": self.secrets_state}
        if self.secrets_state == "missing":
            self.log.warning("secrets file not found: providers without env secrets run dry",
                             extra={"fields": fields})  # fmt: skip
        self.log.info("adapters ready", extra={"fields": {**fields, **self._modes()}})

    async def teardown(self) -> None:
        registry: AdapterRegistry | None = getattr(self, "registry", None)
        if registry is not None:
            await registry.aclose()
        session: aiohttp.ClientSession | None = getattr(self, "_session", None)
        if session is not None:
            await session.close()

    @property
    def live_calls_enabled(self) -> bool:
        return self.flags.get(ENABLE_PUBLIC_GPU_ADAPTERS, False)

    # -- registry and flags ---------------------------------------------------------

    def _build(self) -> AdapterRegistry:
        options = HttpOptions(retry=self.settings.retry, session=self._session)
        return build_registry(
            self.settings, self.secrets,
            enable_public_gpu_adapters=self.live_calls_enabled, options=options,
        )  # fmt: skip

    def _modes(self) -> dict[str, str]:
        return {d.provider: d.mode for d in self.registry.describe()}

    async def _follow_flags(self) -> None:
        delay = 0.1
        while True:
            try:
                async for item in follow(self.bus, [FLAGS_SUBJECT], after=self.flags_position):
                    await self._on_flags(item)
                    delay = 0.1
            except FollowError as e:
                level = "warning" if delay == 0.1 else "debug"
                getattr(self.log, level)(
                    "cannot read flags from the store yet; retrying",
                    extra={"fields": {"error": str(e), "retry_in_s": delay}},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, FOLLOW_RETRY_MAX_S)

    async def _on_flags(self, item: bytes) -> None:
        try:
            stored = decode_stored(item)
            event = decode_event(stored.event)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self.log.warning(
                "skipping an undecodable flags event", extra={"fields": {"error": str(e)}}
            )
            return
        self.flags_position = stored.seq
        if not isinstance(event.payload, FlagsChanged):
            return
        before = self.live_calls_enabled
        self.flags = apply_flags(self.flags, event.payload)
        if self.live_calls_enabled == before:
            return
        old, self.registry = self.registry, self._build()
        await old.aclose()
        self.log.info(
            f"{ENABLE_PUBLIC_GPU_ADAPTERS} is {'on' if self.live_calls_enabled else 'off'}: "
            "adapters rebuilt",
            extra={"fields": {"flags_position": stored.seq, **self._modes()}},
        )

    # -- endpoints ------------------------------------------------------------------

    def _concurrent(self, handle: MicroHandler) -> MicroHandler:
        async def start(req: Request) -> None:
            self.spawn(self._limited(handle, req), "request")

        return start

    async def _limited(self, handle: MicroHandler, req: Request) -> None:
        async with self._slots:
            await handle(req)

    def _adapter(self, provider: str) -> ProviderAdapter:
        try:
            return self.registry.get(provider)
        except AdapterError as err:
            raise endpoint_error(err) from err

    async def submit(self, req: SubmitRequest) -> bytes:
        adapter = self._adapter(req.provider)
        job_id = req.job.job_id
        started = self.clock.monotonic()
        try:
            result = await adapter.submit(req.job)
        except AdapterError as err:
            await self._emit(
                AdapterSubmitted(
                    provider=req.provider, dry_run=adapter.dry_run, ok=False, job_id=job_id,
                    reason=err.reason, error=type(err).__name__, latency_ms=self._ms(started),
                ),
                key=job_id or req.provider,
            )
            raise endpoint_error(err) from err
        if result.id is not None:
            self._book.record(req.provider, result.id, result.status, job_id)
        await self._emit(
            AdapterSubmitted(
                provider=req.provider, dry_run=result.dry_run, ok=result.ok, remote_id=result.id,
                job_id=job_id, status=result.status, raw_status=result.raw_status,
                reason=result.reason, latency_ms=self._ms(started),
            ),
            key=job_id or result.id or req.provider,
        )
        return self._reply(result)

    async def poll(self, req: PollRequest) -> bytes:
        adapter = self._adapter(req.provider)
        try:
            result = await adapter.poll(req.id)
        except AdapterError as err:
            raise endpoint_error(err) from err
        await self._status_seen(
            adapter, req, result.status, "poll", raw_status=result.raw_status,
            artifacts=result.artifacts, error=result.error, progress=result.progress,
        )  # fmt: skip
        return self._reply(result)

    async def cancel(self, req: CancelRequest) -> bytes:
        adapter = self._adapter(req.provider)
        try:
            result = await adapter.cancel(req.id)
        except AdapterError as err:
            raise endpoint_error(err) from err
        if result.status is not None:  # Modal's cancel route does not say where the job is
            await self._status_seen(
                adapter, req, result.status, "cancel", raw_status=result.raw_status,
                error=result.reason,
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
        except AdapterError as err:
            raise endpoint_error(err) from err
        return encode_transcript(transcript)

    # -- helpers ----------------------------------------------------------------------

    async def _check(self, provider: str) -> HealthResult:
        adapter = self._adapter(provider)
        started = self.clock.monotonic()
        try:
            result = await adapter.health()
        except AdapterError as err:
            down = isinstance(err, TransportError | ProviderUnavailableError)
            result = HealthResult(
                ok=False, provider=provider, dry_run=adapter.dry_run,
                state="down" if down else "unknown", reason=str(err), error=type(err).__name__,
            )  # fmt: skip
        await self._emit(
            AdapterHealthChecked(
                provider=provider, dry_run=result.dry_run, ok=result.ok, state=result.state,
                remote_id=getattr(self.settings, provider).target(), raw_state=result.raw_state,
                queue_depth=result.queue_depth, reason=result.reason, error=result.error,
                latency_ms=self._ms(started),
            ),
            key=provider,
        )
        return result

    async def _status_seen(
        self,
        adapter: ProviderAdapter,
        req: PollRequest,
        status: str,
        call: str,
        *,
        raw_status: str | None,
        artifacts: list[str] | None = None,
        error: str | None = None,
        progress: float | None = None,
    ) -> None:
        if adapter.dry_run and status == "unknown":
            return  # a dry-run refusal ("missing token"): nothing was asked of a provider
        before = self._book.record(req.provider, req.id, status, req.job_id)
        if before is not None and before.status == status:
            return
        job_id = req.job_id or (before.job_id if before else None)
        await self._emit(
            AdapterStatusChanged(
                provider=req.provider, dry_run=adapter.dry_run, remote_id=req.id, status=status,
                previous=before.status if before else None, job_id=job_id,
                raw_status=raw_status, call=call, artifacts=artifacts or [], error=error,
                progress=progress,
            ),
            key=job_id or req.id,
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
