"""The advisor as a service: decisions on NATS, state rebuilt from the event log.

On start the advisor follows its events (``state.FOLLOWED``: telemetry,
providers, flags, remote queue depth) from position 0 through the store, then
live, folding each into its :class:`~services.advisor.state.AdvisorState`.
Only once that history is folded does it answer, seed the registry (first
start only: deterministic event ids, so replicas starting together and
restarts publish nothing twice) and take ``job.submitted`` events.

``job.submitted`` arrives through a durable JetStream push consumer with a
deliver group, so N replicas share the work. For each job the advisor
publishes ``job.advised`` (event id derived from the submitted id, so a
redelivered job is dropped by JetStream and by the store) with the decision
and its inputs, and acks only after JetStream stored it.

Commands (provider put/delete, flags set) validate, publish their event and
wait until the event came back folded from the store, so the reply and any
later read see the change. Telemetry is sampled in a worker thread every
``[advisor] telemetry_interval_s`` and published as ``telemetry.sampled``.
Endpoints, subjects and types: ``schemas/advisor.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from schemas import Event, decode_event, make_event
from schemas import advisor as api
from schemas.flags import DEFAULTS, DESCRIPTIONS, FlagsChanged
from schemas.jobs import JobAdvised
from schemas.subjects import STORE_READ, STORE_STATS, STREAM
from schemas.system import StoreReadRequest, StoreStats
from services.advisor.config import config_digest, load_config
from services.advisor.errors import CostRequestError, ProviderNotFound
from services.advisor.pricing import preview_costs
from services.advisor.registry import load_seed, seed_payloads, stats
from services.advisor.rules import decide
from services.advisor.state import FOLLOWED, AdvisorState, all_flags, apply, context, gpu_list
from services.advisor.telemetry import NvmlTelemetry, TelemetrySource
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.endpoints import EndpointError, endpoint
from services.runtime.errors import GpurouteError
from services.runtime.follow import FollowError, follow, literal_prefix
from services.runtime.service import Service

CONSUMER = "advisor"
"""Durable name and deliver group of the job.submitted consumer."""
BATCH = 256
MAX_ACK_PENDING = 4096
COMMAND_WAIT_S = 5.0
READY_WAIT_S = 5.0
REPLY_CACHE_SIZE = 4096


def advised_id(submitted_id: str) -> str:
    """The id of the ``job.advised`` answering a ``job.submitted``: same input, same id."""
    return f"{submitted_id}:advised"


def seed_id(provider_id: str) -> str:
    return f"seed:provider:{provider_id}"


class _Stored(msgspec.Struct):
    seq: int
    event: msgspec.Raw


class _Page(msgspec.Struct):
    events: list[_Stored]


class _SubmittedData(msgspec.Struct):
    spec: msgspec.Raw


class _Submitted(msgspec.Struct):
    """A job.submitted envelope, its spec kept raw: it is decoded as the advisor's
    spec (fields schemas.jobs.JobSpec does not know, like ``tokens``, survive)."""

    id: str
    key: str
    data: _SubmittedData
    correlation_id: str | None = None


_stored_decoder = msgspec.json.Decoder(_Stored)
_submitted_decoder = msgspec.json.Decoder(_Submitted)
_spec_decoder = msgspec.json.Decoder(api.AdvisorJobSpec)
_encoder = msgspec.json.Encoder()


class AdvisorService(Service):
    name = "advisor"
    description = "Decides where each job runs; provider registry, cost preview, flags."

    def __init__(
        self, bus: Bus, config: Config, *, telemetry: TelemetrySource | None = None
    ) -> None:
        super().__init__(bus, config)
        self.settings = config.advisor
        self.rules = load_config(self.settings.config)
        self.digest = config_digest(self.rules)
        self.seed = load_seed(self.settings.seed_file)
        self.telemetry = telemetry
        self.host = socket.gethostname()
        self.state = AdvisorState()
        self.position = 0
        """Store position of the last followed event folded into ``state``."""
        self.ready = asyncio.Event()
        """Set once the history is folded and the registry seeded: endpoints answer."""
        self._history_done = False
        self._applied: dict[str, asyncio.Future[None]] = {}
        self._inbox: list[Msg] = []
        self._inbox_event = asyncio.Event()
        self._jobs: JetStreamContext.PushSubscription | None = None
        self._replies: dict[api.AdvisorJobSpec, bytes] = {}
        """Encoded advise replies for the current state (cleared by every fold)."""

    # -- lifecycle -------------------------------------------------------------

    async def setup(self) -> None:
        assert self.micro is not None
        for name, subject, request_type, handler in self._endpoints():
            await self.micro.add_endpoint(
                name=name, subject=subject, handler=endpoint(request_type, handler)
            )
        self.spawn(self._sync(), "sync")
        if self.settings.telemetry_interval_s > 0:
            self.spawn(self._sample_forever(), "telemetry")
        try:
            await asyncio.wait_for(self.ready.wait(), self.settings.ready_timeout_s)
        except TimeoutError:
            self.log.warning(
                "state not rebuilt yet (is the store running?): answering 503 until it is",
                extra={"fields": {"waited_s": self.settings.ready_timeout_s}},
            )

    async def teardown(self) -> None:
        if self._jobs is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._jobs.unsubscribe()
        for future in self._applied.values():
            future.cancel()
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.close)

    def _endpoints(self) -> list[tuple[str, str, type[Any], Callable[[Any], Awaitable[Any]]]]:
        return [
            ("advise", api.ADVISE_SUBJECT, api.AdvisorJobSpecBody, self.advise),
            ("costs", api.COSTS_SUBJECT, api.CostRequest, self.costs),
            ("gpus", api.GPUS_SUBJECT, api.GpuListRequest, self.gpus),
            ("providers-list", api.PROVIDERS_LIST_SUBJECT, api.ProvidersQuery, self.providers),
            ("providers-get", api.PROVIDERS_GET_SUBJECT, api.ProviderRef, self.provider),
            ("providers-put", api.PROVIDERS_PUT_SUBJECT, api.ProviderPut, self.put_provider),
            ("providers-delete", api.PROVIDERS_DELETE_SUBJECT, api.ProviderRef, self.remove),
            ("providers-stats", api.PROVIDERS_STATS_SUBJECT, api.ProvidersQuery, self.stats),
            ("flags-get", api.FLAGS_GET_SUBJECT, api.FlagsQuery, self.flags),
            ("flags-set", api.FLAGS_SET_SUBJECT, api.FlagsUpdate, self.set_flags),
        ]

    # -- state: history from the store, then live --------------------------------

    async def _sync(self) -> None:
        """Fold followed events forever; resume after the last position on errors."""
        delay = 0.1
        while True:
            try:
                end = await self._history_end()
                if self.position >= end:
                    self._caught_up()
                async for raw in follow(self.bus, list(FOLLOWED), after=self.position):
                    delay = 0.1
                    self._fold(raw)
                    if self.position >= end:
                        self._caught_up()
            except (FollowError, GpurouteError) as e:
                self.log.warning(
                    "cannot follow the event store, retrying",
                    extra={"fields": {"error": str(e), "retry_s": delay}},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _history_end(self) -> int:
        """Position of the newest stored event the advisor follows (0: none yet)."""
        end = 0
        for pattern in FOLLOWED:
            req = StoreReadRequest(limit=1, type=literal_prefix([pattern]), last=True)
            raw = await self.bus.call_raw(STORE_READ, msgspec.json.encode(req), timeout=5.0)
            page = msgspec.json.decode(raw, type=_Page)
            end = max([end, *(item.seq for item in page.events)])
        return end

    def _fold(self, raw: bytes) -> None:
        item = _stored_decoder.decode(raw)
        self._replies.clear()
        try:
            event = decode_event(item.event)
            self.state = apply(self.state, event.payload)
        except (msgspec.ValidationError, TypeError) as e:  # the store validated it: a bug
            self.log.error(
                "cannot fold event", extra={"fields": {"seq": item.seq, "error": str(e)}}
            )
            self.position = item.seq
            return
        self.position = item.seq
        future = self._applied.pop(event.id, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _caught_up(self) -> None:
        """History folded (runs once): seed, then answer and take jobs."""
        if self._history_done:
            return
        self._history_done = True
        fields = {"position": self.position, "providers": len(self.state.registry.providers)}
        self.log.info("state rebuilt", extra={"fields": fields})
        self.spawn(self._go_live(), "live")

    async def _go_live(self) -> None:
        await self._seed()
        self.ready.set()
        await self._consume()

    async def _wait_ready(self) -> None:
        if self.ready.is_set():
            return
        try:
            await asyncio.wait_for(self.ready.wait(), READY_WAIT_S)
        except TimeoutError:
            raise EndpointError(
                503, "the advisor is still rebuilding its state (is the store running?)"
            ) from None

    async def _publish_and_wait(self, data: msgspec.Struct, key: str) -> tuple[str, bool]:
        """Publish one event; wait until it is folded back. Returns (event id, applied)."""
        event = self.bus.event(data, key=key)
        return event.id, await self._publish_folded([event])

    async def _publish_folded(self, events: list[Event]) -> bool:
        """Publish events and wait until every one came back folded from the store
        (False after ``COMMAND_WAIT_S``: published, not stored yet)."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in events]
        for event, future in zip(events, futures, strict=True):
            self._applied[event.id] = future
        try:
            await self.bus.publish_many(events)
            await asyncio.wait_for(asyncio.gather(*futures), COMMAND_WAIT_S)
            return True
        except TimeoutError:
            return False
        finally:
            for event in events:
                self._applied.pop(event.id, None)

    # -- seeding, telemetry ---------------------------------------------------------

    async def _seed(self) -> None:
        payloads = seed_payloads(self.state.registry, self.seed)
        if not payloads:
            return
        now = self.clock.now()
        events = [
            make_event(p, id=seed_id(p.profile.id), key=p.profile.id, ts=now, source=self.name)
            for p in payloads
        ]
        folded = await self._publish_folded(events)
        self.log.info(
            "seeded the provider registry",
            extra={"fields": {"providers": len(events), "folded": folded}},
        )

    async def _sample_forever(self) -> None:
        if self.telemetry is None:
            self.telemetry = await asyncio.to_thread(NvmlTelemetry)
        source = self.telemetry
        while True:
            eid = self.bus.ids.new()
            try:
                sample = await asyncio.to_thread(source.sample, eid, self.clock.now())
                event = make_event(
                    sample,
                    id=eid,
                    key=self.host,
                    ts=sample.ts,
                    source=self.name,
                    correlation_id=eid,
                )
                await self.bus.publish(event)
            except GpurouteError as e:
                self.log.warning("telemetry not published", extra={"fields": {"error": str(e)}})
            await asyncio.sleep(self.settings.telemetry_interval_s)

    # -- job.submitted -> job.advised ----------------------------------------------

    async def _consume(self) -> None:
        config = ConsumerConfig(
            durable_name=CONSUMER,
            deliver_group=CONSUMER,
            filter_subject="job.submitted",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_ack_pending=MAX_ACK_PENDING,
        )
        self._jobs = await self.bus.js.subscribe(
            "job.submitted",
            queue=CONSUMER,
            durable=CONSUMER,
            stream=STREAM,
            config=config,
            cb=self._on_job,
            manual_ack=True,
        )
        while True:
            await self._inbox_event.wait()
            self._inbox_event.clear()
            while self._inbox:
                batch, self._inbox = self._inbox[:BATCH], self._inbox[BATCH:]
                await self._advise_batch(batch)

    async def _on_job(self, msg: Msg) -> None:
        self._inbox.append(msg)
        self._inbox_event.set()

    async def _advise_batch(self, msgs: list[Msg]) -> None:
        """Decide each job with the same state; publish every job.advised, then ack."""
        events: list[Event] = []
        done: list[Msg] = []
        for msg in msgs:
            try:
                events.append(self._advised(_submitted_decoder.decode(msg.data)))
                done.append(msg)
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                # not a job.submitted envelope at all: the store dead-letters it
                self.log.warning("malformed job.submitted", extra={"fields": {"error": str(e)}})
                await msg.term()
        try:
            await self.bus.publish_many(events)
        except GpurouteError as e:
            self.log.error("job.advised not published", extra={"fields": {"error": str(e)}})
            for msg in done:
                await msg.nak(delay=1)
            return
        for msg in done:
            await msg.ack()

    def _advised(self, submitted: _Submitted) -> Event:
        """The job.advised event for one job: a decision with its inputs, or a
        rejection (target ``rejected``) naming the field the advisor cannot accept."""
        try:
            spec = _spec_decoder.decode(submitted.data.spec)
        except msgspec.ValidationError as e:
            data = JobAdvised(target="rejected", rule="invalid_spec", reason=f"job spec: {e}")
        else:
            data = self._decide(spec)
        return make_event(
            data,
            id=advised_id(submitted.id),
            key=submitted.key,
            ts=self.clock.now(),
            source=self.name,
            correlation_id=submitted.correlation_id or submitted.id,
            causation_id=submitted.id,
        )

    def _decide(self, spec: api.AdvisorJobSpec) -> JobAdvised:
        state = self.state
        ctx = context(state)
        decision = msgspec.structs.replace(decide(spec, ctx, self.rules), details=None)
        inputs = api.AdvisedInputs(
            spec=spec,
            telemetry_sample_id=ctx.telemetry.sample_id,
            flags=all_flags(state),
            registry_version=state.registry.version,
            remote_queue_depth=state.remote_queue_depth,
            state_position=self.position,
            config_digest=self.digest,
            decision=decision,
        )
        return JobAdvised(
            target=decision.target,
            rule=decision.rule,
            reason=decision.reason,
            provider=decision.provider_id,
            estimate_usd=decision.estimate_usd,
            inputs=msgspec.to_builtins(inputs),
        )

    # -- endpoints -------------------------------------------------------------------

    async def advise(self, spec: api.AdvisorJobSpecBody) -> bytes:
        """The encoded Decision. A decision is a pure function of the spec and the
        state, so replies are kept per spec until the next fold changes the state."""
        await self._wait_ready()
        reply = self._replies.get(spec)
        if reply is None:
            if len(self._replies) >= REPLY_CACHE_SIZE:
                self._replies.clear()
            reply = _encoder.encode(decide(spec, context(self.state), self.rules))
            self._replies[spec] = reply
        return reply

    async def costs(self, request: api.CostRequest) -> api.CostPreview:
        await self._wait_ready()
        try:
            return preview_costs(request, self.state.registry, self.state.flags, self.rules)
        except ProviderNotFound as e:
            raise EndpointError(404, str(e)) from e
        except CostRequestError as e:
            raise EndpointError(400, str(e)) from e

    async def gpus(self, request: api.GpuListRequest) -> api.GpuList:
        await self._wait_ready()
        return gpu_list(self.state, request.debug)

    async def providers(self, _: api.ProvidersQuery) -> api.ProviderList:
        await self._wait_ready()
        reg = self.state.registry
        return api.ProviderList(version=reg.version, providers=list(reg.providers.values()))

    async def provider(self, ref: api.ProviderRef) -> api.ProviderProfile:
        await self._wait_ready()
        profile: api.ProviderProfile | None = self.state.registry.providers.get(ref.id)
        if profile is None:
            raise EndpointError(404, str(ProviderNotFound(ref.id)))
        return profile

    async def put_provider(self, put: api.ProviderPut) -> api.ProviderChanged:
        await self._wait_ready()
        profile = msgspec.convert(msgspec.to_builtins(put.profile), api.ProviderProfile)
        if put.create and profile.id in self.state.registry.providers:
            raise EndpointError(409, f"provider {profile.id!r} exists; PUT it to replace it")
        eid, applied = await self._publish_and_wait(
            api.ProviderUpserted(profile=profile, origin="api"), key=profile.id
        )
        return api.ProviderChanged(
            id=profile.id,
            event_id=eid,
            version=self.state.registry.version,
            applied=applied,
            profile=profile,
        )

    async def remove(self, ref: api.ProviderRef) -> api.ProviderChanged:
        await self._wait_ready()
        if ref.id not in self.state.registry.providers:
            raise EndpointError(404, str(ProviderNotFound(ref.id)))
        eid, applied = await self._publish_and_wait(api.ProviderRemoved(id=ref.id), key=ref.id)
        return api.ProviderChanged(
            id=ref.id, event_id=eid, version=self.state.registry.version, applied=applied
        )

    async def stats(self, _: api.ProvidersQuery) -> api.ProviderStats:
        await self._wait_ready()
        try:
            store = await self.bus.call(STORE_STATS, {}, StoreStats, timeout=2.0)
            storage: str | None = store.path
        except GpurouteError:
            storage = None
        reg = self.state.registry
        s = stats(reg)
        return api.ProviderStats(
            total=s.total,
            enabled=s.enabled,
            by_kind=s.by_kind,
            version=s.version,
            seeded=reg.seeded,
            storage=storage,
            persisted=storage is not None,
            position=self.position,
        )

    async def flags(self, _: api.FlagsQuery) -> api.FlagsView:
        await self._wait_ready()
        return self._flags_view()

    async def set_flags(self, update: api.FlagsUpdate) -> api.FlagsView:
        await self._wait_ready()
        unknown = sorted(set(update.flags) - set(DEFAULTS))
        if unknown:
            known = ", ".join(sorted(DEFAULTS))
            raise EndpointError(400, f"unknown flag `{unknown[0]}` (known: {known}) - at `$.flags`")
        if not update.flags:
            raise EndpointError(400, "no flag to change - at `$.flags`")
        eid, applied = await self._publish_and_wait(FlagsChanged(flags=update.flags), key="flags")
        return self._flags_view(changed=sorted(update.flags), event_id=eid, applied=applied)

    def _flags_view(
        self, changed: list[str] | None = None, event_id: str | None = None, applied: bool = True
    ) -> api.FlagsView:
        return api.FlagsView(
            flags=all_flags(self.state),
            defaults=dict(sorted(DEFAULTS.items())),
            descriptions=dict(sorted(DESCRIPTIONS.items())),
            changed=changed or [],
            event_id=event_id,
            applied=applied,
        )
