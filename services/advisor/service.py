"""The advisor as a service: decisions on NATS, state rebuilt from the event log.

On start the advisor follows its events (``state.FOLLOWED``: telemetry,
providers, flags, remote queue depth) through the runtime's follower
(``services/runtime/follower.py``): from its newest snapshot (else position 0)
through the store, then live, folding each into its
:class:`~services.advisor.state.AdvisorState`. Start returns at once; until
that history is folded requests get a prompt 503 "still loading". Once it is,
the advisor seeds the registry (first start only: deterministic event ids, so
replicas starting together and restarts publish nothing twice), answers and
takes ``job.submitted`` events.

The request/reply handlers are in ``endpoints.py`` (mixed into the service);
commands among them publish through :meth:`AdvisorService._publish_and_wait`,
which waits until the event came back folded (``Follower.publish_and_wait``). ``jobs.py``
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

import msgspec

from schemas import Event, make_event
from schemas.advisor import AdvisedInputs, JobAdvised
from schemas.jobs import JobSpec
from services.advisor.config import AdvisorConfig, config_digest, load_config
from services.advisor.endpoints import IN_FLIGHT, AdvisorEndpoints
from services.advisor.jobs import JobConsumer
from services.advisor.projection import AdvisorProjection
from services.advisor.records import AdviceRecords
from services.advisor.registry import load_seed, seed_payloads
from services.advisor.rules import Decider
from services.advisor.state import FOLLOWED, AdvisorState, all_flags
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.endpoints import InFlight, endpoint
from services.runtime.follower import Follower
from services.runtime.ids import derived_id
from services.runtime.profiling import HotPaths, Reporter, perf_on
from services.runtime.service import Service
from services.runtime.snapshots import Snapshots

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
        self.hot = HotPaths("service.advisor")
        """Timed while the profiler flag is on; reported to the budget."""
        self.follower = Follower(
            bus, AdvisorProjection(node=self.node), FOLLOWED, log=self.log,
            snapshots=Snapshots(config.data_path / "snapshots"), hold_ready=True,
            on_apply=self._on_fold, hot=self.hot,
        )  # fmt: skip
        self.projector = self.follower.projector
        self.ready = self.follower.ready
        """Set once the history is folded and the registry seeded: endpoints answer."""
        self.records = AdviceRecords(bus, self.node)
        """Recorded decisions rebuilt from the store, for a what-if of one job."""
        self.jobs = JobConsumer(bus, self._decide, source=self.name, log=self.log)
        self._replies: dict[JobSpec, bytes] = {}
        """Encoded advise replies for the current state (cleared by every fold)."""
        self._decider: tuple[AdvisorState, AdvisorConfig, Decider] | None = None
        """The rules prepared for a state (see ``_decider_for``)."""

    # -- lifecycle -------------------------------------------------------------

    async def setup(self) -> None:
        """Register the endpoints and start following; returns at once (requests
        get a prompt 503 until the state is loaded and the registry seeded)."""
        assert self.micro is not None
        for name, subject, request_type, handler in self._endpoints():
            limit = IN_FLIGHT.get(subject)
            in_flight = None if limit is None else InFlight(limit, self.spawn)
            await self.micro.add_endpoint(
                name=name, subject=subject,
                handler=endpoint(request_type, handler, in_flight=in_flight),
            )  # fmt: skip
        self.supervise(self.follower.run, "follow")  # resumes after self.position
        reporter = Reporter(self.bus, self.hot, self.log, self.config.budget.profile_flush_s)
        self.supervise(reporter.report, "hot-paths")
        self.spawn(self._go_live(), "live")

    async def teardown(self) -> None:
        await self.jobs.stop()
        await self.follower.close()

    def _on_fold(self, seq: int, event: Event) -> None:
        self._replies.clear()  # a decision depends on the state: cached replies are stale
        if event.type == "flags.changed":
            self.hot.on = perf_on(self.state.flags)

    async def _go_live(self) -> None:
        """Once the history is folded: seed, then answer and take jobs."""
        await self.follower.loaded.wait()
        fields = {"position": self.position, "providers": len(self.state.registry.providers)}
        self.log.info("state rebuilt", extra={"fields": fields})
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
        return await self.follower.publish_and_wait(events, COMMAND_WAIT_S)

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
        with self.hot.span("advise.job"):
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
