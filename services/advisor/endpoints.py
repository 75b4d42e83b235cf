"""The advisor's request/reply endpoints: one handler per ``nats.micro`` subject.

Queries (advise, costs, gpus, providers list/get/stats, flags get) answer from
the state the service has folded; commands (provider put/delete, flags set)
validate, publish their event and wait until the event came back folded from
the store, so the reply and any later read see the change. A flags set records
only the flags whose value it changes, and no event when it changes none. Until the
state is loaded and the registry seeded a handler answers a prompt 503 "still
loading" (``Follower.require_ready``). Subjects and types: ``schemas/advisor.py``,
``schemas/providers.py``.

The what-if for one job (``whatif``) records nothing: it reads the job's
``job.advised`` and the history before it from the store (``records.py``) and
re-runs the decision with the request's thresholds and prices (``whatif.py``).
It waits on store reads, so its requests run each in a task of their own
(``IN_FLIGHT``).

:class:`AdvisorEndpoints` is mixed into
:class:`~services.advisor.service.AdvisorService`, which owns the state, folds
events into it and registers these handlers on start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from schemas.advisor import (
    ADVISE_SUBJECT,
    CONFIG_SUBJECT,
    COSTS_SUBJECT,
    FLAGS_GET_SUBJECT,
    FLAGS_SET_SUBJECT,
    GPUS_SUBJECT,
    WHATIF_SUBJECT,
    AdvisorConfigQuery,
    AdvisorConfigView,
    CostPreview,
    CostRequest,
    FlagsQuery,
    FlagsUpdate,
    FlagsView,
    GpuList,
    GpuListRequest,
    WhatIfAnswer,
    WhatIfRequest,
)
from schemas.flags import DEFAULTS, DESCRIPTIONS, FlagsChanged
from schemas.jobs import JobSpec
from schemas.providers import (
    PROVIDERS_DELETE_SUBJECT,
    PROVIDERS_GET_SUBJECT,
    PROVIDERS_LIST_SUBJECT,
    PROVIDERS_PUT_SUBJECT,
    PROVIDERS_STATS_SUBJECT,
    ProviderChanged,
    ProviderList,
    ProviderListQuery,
    ProviderProfile,
    ProviderPut,
    ProviderRef,
    ProviderRemoved,
    ProvidersQuery,
    ProviderStats,
    ProviderUpserted,
)
from schemas.subjects import STORE_STATS
from schemas.system import StoreStats
from services.advisor.config import AdvisorConfig
from services.advisor.errors import CostRequestError, ProviderNotFound, WhatIfError
from services.advisor.pricing import preview_costs
from services.advisor.records import AdviceRecords
from services.advisor.registry import stats
from services.advisor.rules import Decider
from services.advisor.state import AdvisorState, all_flags, context, gpu_list
from services.advisor.whatif import what_if_one
from services.runtime.bus import Bus
from services.runtime.endpoints import EndpointError
from services.runtime.errors import GpurouteError
from services.runtime.follower import Follower
from services.runtime.profiling import HotPaths
from services.runtime.projection import Projector

REPLY_CACHE_SIZE = 4096
IN_FLIGHT = {WHATIF_SUBJECT: 4}
"""Endpoints that wait on the store: at most this many requests each, in tasks."""

_encoder = msgspec.json.Encoder()


class AdvisorEndpoints:
    """The handlers, as methods of the advisor service.

    The attributes below and :meth:`_publish_and_wait` are set and implemented by
    :class:`~services.advisor.service.AdvisorService`; handlers read them, fill
    the advise reply cache (``_replies``), which every fold clears, and keep the
    :class:`~services.advisor.rules.Decider` of the current state (``_decider``).
    """

    bus: Bus
    rules: AdvisorConfig
    digest: str
    records: AdviceRecords
    projector: Projector[AdvisorState]
    ready: asyncio.Event
    follower: Follower[AdvisorState]
    hot: HotPaths
    _replies: dict[JobSpec, bytes]
    _decider: tuple[AdvisorState, AdvisorConfig, Decider] | None

    @property
    def state(self) -> AdvisorState:
        """What the folded events say now (the projector's state)."""
        return self.projector.state

    @property
    def position(self) -> int:
        """Store position of the last followed event folded into ``state``."""
        return self.projector.position

    async def _publish_and_wait(self, data: msgspec.Struct, key: str) -> tuple[str, bool]:
        raise NotImplementedError

    def _decider_for(self, state: AdvisorState) -> Decider:
        """The rules prepared for ``state`` (the current one): kept until the state or
        the config is another object. States are immutable; every fold that changes
        anything makes a new one, so a kept decider never decides on a stale state."""
        kept = self._decider
        if kept is None or kept[0] is not state or kept[1] is not self.rules:
            kept = self._decider = (state, self.rules, Decider(context(state), self.rules))
        return kept[2]

    def _endpoints(self) -> list[tuple[str, str, type[Any], Callable[[Any], Awaitable[Any]]]]:
        return [
            ("advise", ADVISE_SUBJECT, JobSpec, self.advise),
            ("costs", COSTS_SUBJECT, CostRequest, self.costs),
            ("gpus", GPUS_SUBJECT, GpuListRequest, self.gpus),
            ("providers-list", PROVIDERS_LIST_SUBJECT, ProviderListQuery, self.providers),
            ("providers-get", PROVIDERS_GET_SUBJECT, ProviderRef, self.provider),
            ("providers-put", PROVIDERS_PUT_SUBJECT, ProviderPut, self.put_provider),
            ("providers-delete", PROVIDERS_DELETE_SUBJECT, ProviderRef, self.remove),
            ("providers-stats", PROVIDERS_STATS_SUBJECT, ProvidersQuery, self.stats),
            ("flags-get", FLAGS_GET_SUBJECT, FlagsQuery, self.flags),
            ("flags-set", FLAGS_SET_SUBJECT, FlagsUpdate, self.set_flags),
            ("whatif", WHATIF_SUBJECT, WhatIfRequest, self.what_if),
            ("config", CONFIG_SUBJECT, AdvisorConfigQuery, self.config_view),
        ]

    async def _wait_ready(self) -> None:
        await self.follower.require_ready("the advisor")

    async def advise(self, spec: JobSpec) -> bytes:
        """The encoded Decision. A decision is a pure function of the spec and the
        state, so replies are kept per spec until the next fold changes the state."""
        await self._wait_ready()
        reply = self._replies.get(spec)
        if reply is None:
            if len(self._replies) >= REPLY_CACHE_SIZE:
                self._replies.clear()
            with self.hot.span("advise"):
                reply = _encoder.encode(self._decider_for(self.state).decide(spec))
            self._replies[spec] = reply
        return reply

    async def costs(self, request: CostRequest) -> CostPreview:
        """The preview; with ``debug`` its ``registry`` is what the stats route says."""
        await self._wait_ready()
        state = self.state
        try:
            preview = preview_costs(request, state.registry, state.flags, self.rules)
        except ProviderNotFound as e:
            raise EndpointError(404, str(e)) from e
        except CostRequestError as e:
            raise EndpointError(400, str(e)) from e
        if request.debug:
            preview = msgspec.structs.replace(preview, registry=await self._stats(state))
        return preview

    async def what_if(self, request: WhatIfRequest) -> WhatIfAnswer:
        """The job's recorded decision and the one made with the request's numbers.
        404: no decision recorded for the job; 409: it cannot be re-run; 400: a
        price names a provider the job's context did not have."""
        await self._wait_ready()
        try:
            record = await self.records.record(request.job_id)
            return what_if_one(record, self.rules, request.thresholds, request.price_overrides)
        except WhatIfError as e:
            raise EndpointError(e.status, str(e)) from e

    async def config_view(self, _: AdvisorConfigQuery) -> AdvisorConfigView:
        return AdvisorConfigView(
            thresholds=self.rules.rules,
            config_digest=self.digest,
            price_overrides=len(self.rules.price_overrides),
        )

    async def gpus(self, request: GpuListRequest) -> GpuList:
        await self._wait_ready()
        return gpu_list(self.state, request.debug)

    async def providers(self, query: ProviderListQuery) -> ProviderList:
        await self._wait_ready()
        reg = self.state.registry
        found = [p for p in reg.providers.values() if query.kind in (None, p.kind)]
        return ProviderList(version=reg.version, providers=found)

    async def provider(self, ref: ProviderRef) -> ProviderProfile:
        await self._wait_ready()
        profile: ProviderProfile | None = self.state.registry.providers.get(ref.id)
        if profile is None:
            raise EndpointError(404, str(ProviderNotFound(ref.id)))
        return profile

    async def put_provider(self, put: ProviderPut) -> ProviderChanged:
        await self._wait_ready()
        profile = msgspec.convert(msgspec.to_builtins(put.profile), ProviderProfile)
        if put.create and profile.id in self.state.registry.providers:
            raise EndpointError(409, f"provider {profile.id!r} exists; PUT it to replace it")
        eid, applied = await self._publish_and_wait(
            ProviderUpserted(profile=profile, origin="api"), key=profile.id
        )
        return ProviderChanged(
            id=profile.id,
            event_id=eid,
            version=self.state.registry.version,
            applied=applied,
            profile=profile,
        )

    async def remove(self, ref: ProviderRef) -> ProviderChanged:
        await self._wait_ready()
        if ref.id not in self.state.registry.providers:
            raise EndpointError(404, str(ProviderNotFound(ref.id)))
        eid, applied = await self._publish_and_wait(ProviderRemoved(id=ref.id), key=ref.id)
        return ProviderChanged(
            id=ref.id, event_id=eid, version=self.state.registry.version, applied=applied
        )

    async def stats(self, _: ProvidersQuery) -> ProviderStats:
        await self._wait_ready()
        return await self._stats(self.state)

    async def _stats(self, state: AdvisorState) -> ProviderStats:
        """The registry's stats with where it is stored: the stats route and a debug
        cost preview both answer this. ``storage_path`` is None (``persisted``
        false) when the store does not answer within 2 s."""
        position = self.position
        try:
            store = await self.bus.call(STORE_STATS, {}, StoreStats, timeout=2.0)
            storage: str | None = store.path
        except GpurouteError:
            storage = None
        return msgspec.structs.replace(
            stats(state.registry),
            seeded=state.registry.seeded,
            storage=storage,
            persisted=storage is not None,
            position=position,
            storage_path=storage,
        )

    async def flags(self, _: FlagsQuery) -> FlagsView:
        await self._wait_ready()
        return self._flags_view()

    async def set_flags(self, update: FlagsUpdate) -> FlagsView:
        await self._wait_ready()
        unknown = sorted(set(update.flags) - set(DEFAULTS))
        if unknown:
            known = ", ".join(sorted(DEFAULTS))
            raise EndpointError(400, f"unknown flag `{unknown[0]}` (known: {known}) - at `$.flags`")
        if not update.flags:
            raise EndpointError(400, "no flag to change - at `$.flags`")
        current = all_flags(self.state)
        changes = {k: v for k, v in sorted(update.flags.items()) if current[k] != v}
        if not changes:  # nothing to record: an event would only add noise to replays
            return self._flags_view()
        eid, applied = await self._publish_and_wait(FlagsChanged(flags=changes), key="flags")
        return self._flags_view(changed=list(changes), event_id=eid, applied=applied)

    def _flags_view(
        self, changed: list[str] | None = None, event_id: str | None = None, applied: bool = True
    ) -> FlagsView:
        return FlagsView(
            flags=all_flags(self.state),
            defaults=dict(sorted(DEFAULTS.items())),
            descriptions=dict(sorted(DESCRIPTIONS.items())),
            changed=changed or [],
            event_id=event_id,
            applied=applied,
        )
