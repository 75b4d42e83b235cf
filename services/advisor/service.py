"""The advisor as a service: decisions on NATS, state rebuilt from the event log.

On start the advisor follows its events (``state.FOLLOWED``: telemetry,
providers, flags, remote queue depth) from position 0 through the store, then
live, folding each into its :class:`~services.advisor.state.AdvisorState`.
Only once that history is folded does it answer, seed the registry (first
start only: deterministic event ids, so replicas starting together and
restarts publish nothing twice) and take ``job.submitted`` events.

The request/reply handlers are in ``endpoints.py`` (mixed into the service);
commands among them publish through :meth:`AdvisorService._publish_and_wait`,
which waits until the event came back folded from the store. ``jobs.py``
consumes ``job.submitted`` and publishes ``job.advised`` with what
:meth:`AdvisorService._decide` returns: the decision and its inputs. The
advisor decides for one node, ``[telemetry] node`` (default: the host name, as
the telemetry service on the same host publishes it); it folds only that
node's ``telemetry.sampled`` (services/telemetry/ samples; the advisor does
not), and each decision records the id of the sample it used, whose event
names the node. Subjects and types: ``schemas/advisor.py``,
``schemas/providers.py``, ``schemas/telemetry.py``.
"""

from __future__ import annotations

import asyncio

import msgspec

from schemas import Event, decode_event, make_event
from schemas.advisor import AdvisedInputs, JobAdvised
from schemas.jobs import JobSpec
from schemas.subjects import STORE_READ
from schemas.system import StoreReadRequest, decode_page, decode_stored
from services.advisor.config import AdvisorConfig, config_digest, load_config
from services.advisor.endpoints import AdvisorEndpoints
from services.advisor.jobs import JobConsumer
from services.advisor.projection import AdvisorProjection
from services.advisor.registry import load_seed, seed_payloads
from services.advisor.rules import Decider
from services.advisor.state import FOLLOWED, AdvisorState, all_flags
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.endpoints import endpoint
from services.runtime.errors import GpurouteError
from services.runtime.follow import FollowError, follow, literal_prefix
from services.runtime.ids import derived_id
from services.runtime.projection import Projector
from services.runtime.service import Service

COMMAND_WAIT_S = 5.0


def seed_id(provider_id: str) -> str:
    """The event id of a seed provider's ``provider.upserted``: a UUIDv7 that depends
    on the provider id alone, so replicas and restarts publish it once."""
    return derived_id(f"seed:provider:{provider_id}", "seed")


class AdvisorService(AdvisorEndpoints, Service):
    name = "advisor"
    description = "Decides where each job runs; provider registry, cost preview, flags."

    def __init__(self, bus: Bus, config: Config) -> None:
        super().__init__(bus, config)
        self.settings = config.advisor
        self.rules = load_config(self.settings.config)
        self.digest = config_digest(self.rules)
        self.seed = load_seed(self.settings.seed_file)
        self.node = config.telemetry.node_id()
        """The node whose telemetry the decisions use (read here, never in the fold)."""
        self.projector = Projector(AdvisorProjection(node=self.node))
        self.ready = asyncio.Event()
        """Set once the history is folded and the registry seeded: endpoints answer."""
        self._history_done = False
        self._applied: dict[str, asyncio.Future[None]] = {}
        self.jobs = JobConsumer(bus, self._decide, source=self.name, log=self.log)
        self._replies: dict[JobSpec, bytes] = {}
        """Encoded advise replies for the current state (cleared by every fold)."""
        self._decider: tuple[AdvisorState, AdvisorConfig, Decider] | None = None
        """The rules prepared for a state (see ``_decider_for``)."""

    # -- lifecycle -------------------------------------------------------------

    async def setup(self) -> None:
        assert self.micro is not None
        for name, subject, request_type, handler in self._endpoints():
            await self.micro.add_endpoint(
                name=name, subject=subject, handler=endpoint(request_type, handler)
            )
        self.supervise(self._sync, "sync")  # resumes after self.position
        try:
            await asyncio.wait_for(self.ready.wait(), self.settings.ready_timeout_s)
        except TimeoutError:
            self.log.warning(
                "state not rebuilt yet (is the store running?): answering 503 until it is",
                extra={"fields": {"waited_s": self.settings.ready_timeout_s}},
            )

    async def teardown(self) -> None:
        await self.jobs.stop()
        for future in self._applied.values():
            future.cancel()

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
            except (FollowError, GpurouteError, msgspec.DecodeError, msgspec.ValidationError) as e:
                # a store reply that does not decode is retried like an unreachable store
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
            page = decode_page(raw)
            end = max([end, *(item.seq for item in page.events)])
        return end

    def _fold(self, raw: bytes) -> None:
        """Fold one ``stored.*`` message. One that does not decode is logged and
        skipped (the store validated what it stored: this is a bug or a forgery)."""
        try:
            item = decode_stored(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            self.log.error("cannot decode a stored event", extra={"fields": {"error": str(e)}})
            return
        self._replies.clear()
        try:
            event = decode_event(item.event)
            self.projector.apply(item.seq, event)
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as e:
            self.log.error(
                "cannot fold event", extra={"fields": {"seq": item.seq, "error": str(e)}}
            )
            self.projector.position = item.seq  # skip it rather than fail forever
            return
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
        await self.jobs.run()

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

    # -- seeding ---------------------------------------------------------------

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

    # -- job.submitted -> job.advised: the decision with its inputs ----------------

    def _decide(self, spec: JobSpec) -> JobAdvised:
        state = self.state
        return job_advised(spec, state, self._decider_for(state), self.position, self.digest)


def job_advised(
    spec: JobSpec, state: AdvisorState, decider: Decider, position: int, digest: str
) -> JobAdvised:
    """The ``job.advised`` payload for ``spec``: the decision (without details) with
    the inputs to re-run it. ``decider``: the rules prepared for ``state``, which the
    service had folded up to store ``position``; ``digest``: the config's."""
    decision = decider.decide(spec, details=False)
    inputs = AdvisedInputs(
        spec=spec,
        telemetry_sample_id=decider.context.telemetry.sample_id,
        flags=all_flags(state),
        registry_version=state.registry.version,
        remote_queue_depth=state.remote_queue_depth,
        state_position=position,
        config_digest=digest,
        decision=decision,
    )
    return JobAdvised(
        target=decision.target,
        rule=decision.rule,
        reason=decision.reason,
        provider=decision.provider_id,
        estimate_usd=decision.estimate_usd,
        inputs=inputs,
    )
