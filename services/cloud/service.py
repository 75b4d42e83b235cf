"""The cloud service: pods at RunPod, serverless money, the autoscaler, the daily cap.

State: the ledger (``ledger.py``), rebuilt by the runtime Follower from the
store (``cloud.>``, ``job.>``, ``flags.changed``) and then followed live. The
service answers only once it has also folded the newest change JetStream holds
(``services/runtime/catch_up.py``): a reservation acknowledged by the stream but
not stored yet when the service restarted is counted before anything is decided.

**One writer.** Every decision that holds or spends money, spawns or
terminates runs in :meth:`CloudService._write_loop`, one at a time, in
arrival order: a request queues a build function; the writer runs the queued
builds in order (each decides on the ledger *as the previous ones left it*,
applies its events to the ledger at once and appends them to the batch) and
publishes the batch before answering. So 200 reservations fired at once are
decided one after another against what is left, never two on the same
"left" (services/cloud/cap.py has the promise). The events carry ``n`` and
the fold skips them when they come back from the store. One cloud service
per deployment: it is the one writer of the day's money.

Provider calls (create, get, terminate) happen outside the writer, between
two builds: a spawn first reserves (one build), then creates the pod, then
records ``cloud.pod.spawned`` (or releases the reservation) in another.

**Checks** (every ``check_interval_s``, :meth:`check`): watch each live pod
at the provider (ready with its port -> ``cloud.pod.ready``; the stuck-runtime
rule, ERROR, gone -> terminated), charge each pod what it ran
(``cloud.cost.updated``) and top its reservation up to another window (refused
by the cap: terminated), release a pod whose claim's lease expired (its
scheduler died holding it), then the autoscaler's plan (``autoscaler.py``).
Past the cap: ``cloud.cost_limit_reached`` once a day, every pod terminated,
reservations refused until the next UTC day.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import msgspec

from schemas import Event
from schemas.cloud import (
    CLAIM,
    CONFIG,
    COST,
    PODS,
    RELEASE,
    RESERVE,
    SETTLE,
    SHUTDOWN_ALL,
    SPAWN,
    STATUS,
    TERMINATE,
    ClaimAnswer,
    ClaimRequest,
    CloudAutoscaled,
    CloudConfigUpdated,
    CloudCostLimitReached,
    CloudCostReleased,
    CloudCostReserved,
    CloudCostUpdated,
    CloudPodClaimed,
    CloudPodReady,
    CloudPodReleased,
    CloudPodSpawned,
    CloudPodTerminated,
    NoBody,
    PodRef,
    PodSpec,
    ReleaseAnswer,
    ReleaseRequest,
    ReserveAnswer,
    ReserveRequest,
    SettleAnswer,
    SettleRequest,
    SpawnRequest,
    TerminateCode,
)
from schemas.cloud_settings import CloudSettings
from services.cloud import cap, views
from services.cloud.autoscaler import plan
from services.cloud.ledger import (
    Ledger,
    LedgerProjection,
    apply,
    billed_seconds,
    call_cost_u,
    day_of,
    micro,
    pod_cost_u,
    usd,
)
from services.cloud.pods import CloudError, PodClient, PodNotFound, pod_client, stuck
from services.runtime.bus import Bus
from services.runtime.catch_up import catch_up, written_by
from services.runtime.config import Config
from services.runtime.endpoints import EndpointError, InFlight, endpoint
from services.runtime.errors import BusError
from services.runtime.follower import Follower
from services.runtime.secrets import load_secrets
from services.runtime.service import Service

MAX_IN_FLIGHT = 1024
Build = Callable[[], Any]


class CloudService(Service):
    name = "cloud"
    description = "Cloud pods and serverless: costs, the daily cap, autoscaling, idle shutdown."

    def __init__(self, bus: Bus, config: Config, client: PodClient | None = None) -> None:
        super().__init__(bus, config)
        projection = LedgerProjection()
        self.follower: Follower[Ledger] = Follower(
            bus, projection, projection.patterns, log=self.log, hold_ready=True
        )
        secrets = load_secrets(config.adapters.secrets_file) if client is None else None
        self.client = client or pod_client(config.cloud.pods, secrets, self.clock)  # type: ignore[arg-type]
        self._queue: list[tuple[Build, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._out: list[Event] = []
        self._running_since: dict[str, float] = {}
        self._settings: tuple[Any, CloudSettings] = (None, config.cloud)
        self.checked = 0
        """Checks done (tests wait on it)."""

    @property
    def state(self) -> Ledger:
        return self.follower.state

    @property
    def settings(self) -> CloudSettings:
        """The config's ``[cloud]``, or the last ``PUT /api/cloud/config``'s, with the
        config's ``pods`` always (the pod client's start-up settings). A logged
        ``cloud.config.updated`` that no longer validates (a bound added since) is
        logged and the config's section used."""
        raw = self.state.settings
        if raw is not None and self._settings[0] is not raw:
            try:
                put = msgspec.convert({**raw, "pods": self._pods()}, CloudSettings)
            except msgspec.ValidationError as e:
                self.log.warning("logged cloud settings refused: the config's are used",
                                 extra={"fields": {"error": str(e)}})  # fmt: skip
                put = self.config.cloud
            self._settings = (raw, put)
        return self._settings[1]

    def _pods(self) -> Any:
        return msgspec.to_builtins(self.config.cloud.pods)

    # -- lifecycle -------------------------------------------------------------

    async def setup(self) -> None:
        assert self.micro is not None
        in_flight = InFlight(MAX_IN_FLIGHT, self.spawn)
        for name, subject, kind, handler in (
            ("reserve", RESERVE, ReserveRequest, self.reserve),
            ("settle", SETTLE, SettleRequest, self.settle),
            ("claim", CLAIM, ClaimRequest, self.claim),
            ("release", RELEASE, ReleaseRequest, self.release),
            ("status", STATUS, NoBody, self.status),
            ("cost", COST, NoBody, self.cost),
            ("pods", PODS, NoBody, self.pods),
            ("spawn", SPAWN, SpawnRequest, self.spawn_pod),
            ("terminate", TERMINATE, PodRef, self.terminate_pod),
            ("shutdown_all", SHUTDOWN_ALL, NoBody, self.shutdown_all),
            ("config", CONFIG, dict, self.put_config),
        ):
            handle = endpoint(kind, handler, in_flight=in_flight)  # type: ignore[arg-type]
            await self.micro.add_endpoint(name=name, subject=subject, handler=handle)
        self.supervise(self.follower.run, "follow")
        self.spawn(self._go_live(), "live")

    async def _go_live(self) -> None:
        await self.follower.loaded.wait()
        await catch_up(self.follower, written_by(self.name), lambda: self.state.n, log=self.log)
        self.spawn(self._write_loop(), "writer")
        self.follower.ready.set()
        self.supervise(self._check_loop, "checks")

    async def teardown(self) -> None:
        for _, future in self._queue:
            future.cancel()
        if self.settings.terminate_on_shutdown and self.follower.ready.is_set():
            mine = [p.pod_id for p in self.state.live_pods() if p.instance == self.instance]
            for pod_id in mine:  # the writer is stopped: record directly, in order
                with contextlib.suppress(CloudError, BusError):
                    await self._provider_terminate(pod_id)
                    self._terminated(pod_id, "shutdown", "the cloud service stopped")
                    await self.bus.publish_many(self._take_out())
        await self.client.aclose()
        await self.follower.close()

    # -- the writer --------------------------------------------------------------

    async def _submit(self, build: Build) -> Any:
        await self.follower.require_ready(self.name)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((build, future))
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            answers: list[tuple[asyncio.Future[Any], Any]] = []
            for build, future in batch:
                try:
                    answers.append((future, build()))
                except Exception as e:  # a refusal or a bug: that request's error only
                    answers.append((future, e))
            events = self._take_out()
            if events:
                try:
                    await self.bus.publish_many(events)
                except BusError as e:
                    for future, _ in answers:
                        if not future.done():
                            future.set_exception(EndpointError(503, f"not recorded: {e}"))
                    raise  # the ledger is ahead of the log: a fresh instance rebuilds it
            for future, answer in answers:
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    def _take_out(self) -> list[Event]:
        out, self._out = self._out, []
        return out

    def _record(self, data: msgspec.Struct, key: str) -> Event:
        """Number ``data``, fold it into the ledger now, queue it for publishing."""
        if "n" in data.__struct_fields__:
            data = msgspec.structs.replace(data, n=self.state.n + 1)
        event = self.bus.event(data, key=key)
        apply(self.state, event)
        self._out.append(event)
        return event

    @property
    def dry_run(self) -> bool:
        return self.client.dry_run

    def _refused(self, verdict: cap.Verdict, day: str) -> None:
        """Record ``cloud.cost_limit_reached`` the first time a day's cap refuses."""
        if day in self.state.limit_days:
            return
        state = self.state
        self._record(CloudCostLimitReached(
            day=day, cap_usd=self.settings.daily_cost_limit, spent_usd=usd(state.spent(day)),
            reserved_usd=usd(state.reserved(day)), refused_usd=usd(verdict.amount),
            reason=verdict.reason, dry_run=self.dry_run), key=day)  # fmt: skip
        self.log.warning("daily cost cap reached", extra={"fields": {"reason": verdict.reason}})

    def _hold(self, ref: str, kind: str, amount: int, what: str, **extra: Any) -> cap.Verdict:
        """Reserve ``amount`` µUSD for ``ref`` if today's cap allows (the writer only)."""
        day = day_of(self.clock.now())
        verdict = cap.check(self.state, self.settings, day, amount, what)
        if day in self.state.limit_days:
            verdict = cap.Verdict(False, amount, verdict.left,
                                  f"cost_cap: the cap of {day} was reached; no spending "
                                  "until the next UTC day")  # fmt: skip
        if not verdict.ok:
            self._refused(verdict, day)
            return verdict
        self._record(CloudCostReserved(
            ref=ref, kind=kind, amount_usd=usd(amount), day=day,  # type: ignore[arg-type]
            cap_usd=self.settings.daily_cost_limit, spent_usd=usd(self.state.spent(day)),
            reserved_usd=usd(self.state.reserved(day) + amount), dry_run=self.dry_run,
            **extra), key=ref)  # fmt: skip
        return verdict

    # -- serverless money ----------------------------------------------------------

    async def reserve(self, req: ReserveRequest) -> ReserveAnswer:
        def build() -> ReserveAnswer:
            settings = self.settings
            amount = cap.call_amount(settings, req.max_s)
            verdict = self._hold(
                req.ref,
                "serverless",
                amount,
                f"serverless call {req.ref}",
                price=settings.serverless_price_per_s,
                job_id=req.job_id,
            )
            return ReserveAnswer(ok=verdict.ok, ref=req.ref, amount_usd=usd(amount),
                                 left_usd=usd(max(0, verdict.left - amount * verdict.ok)),
                                 reason=verdict.reason, dry_run=self.dry_run)  # fmt: skip

        answer: ReserveAnswer = await self._submit(build)
        return answer

    async def settle(self, req: SettleRequest) -> SettleAnswer:
        def build() -> SettleAnswer:
            held = self.state.held.get(req.ref)
            if held is None:
                raise EndpointError(404, f"no reservation {req.ref!r} (settled or never made)")
            billed = billed_seconds(0.0, req.billed_s)
            cost = call_cost_u(held.price, billed)
            if billed:
                self._record(CloudCostUpdated(
                    ref=req.ref, provider="runpod-serverless", billed_s=billed,
                    cost_usd=usd(cost), price=held.price, job_id=req.job_id or held.job_id,
                    dry_run=req.dry_run or self.dry_run), key=req.ref)  # fmt: skip
            left = self.state.held[req.ref].outstanding
            self._record(
                CloudCostReleased(
                    ref=req.ref, released_usd=usd(left), reason="settled", dry_run=self.dry_run
                ),
                key=req.ref,
            )
            return SettleAnswer(ref=req.ref, cost_usd=usd(cost), released_usd=usd(left),
                                dry_run=req.dry_run or self.dry_run)  # fmt: skip

        answer: SettleAnswer = await self._submit(build)
        return answer

    # -- pods as targets -------------------------------------------------------------

    async def claim(self, req: ClaimRequest) -> ClaimAnswer:
        """The least used idle ready pod for one attempt, decided in the writer: two
        schedulers asking at once never get the same pod."""

        def build() -> ClaimAnswer:
            state = self.state
            if day_of(self.clock.now()) in state.limit_days:
                return ClaimAnswer(ok=False, reason="cost_cap: the day's cap was reached; "
                                   "pods are being terminated", dry_run=self.dry_run)  # fmt: skip
            live = state.live_pods()
            free = [p for p in live if p.url is not None and p.busy is None]
            if not free:
                busy = sum(p.busy is not None for p in live)
                return ClaimAnswer(ok=False, reason=f"no idle ready pod ({len(live)} live, "
                                   f"{busy} busy)", dry_run=self.dry_run)  # fmt: skip
            pod = min(free, key=lambda p: (p.claims, p.spawned_ts, p.pod_id))
            self._record(CloudPodClaimed(pod_id=pod.pod_id, job_id=req.job_id,
                                         instance=req.instance, dry_run=pod.dry_run,
                                         lease_s=req.lease_s), key=pod.pod_id)  # fmt: skip
            return ClaimAnswer(ok=True, pod_id=pod.pod_id, url=pod.url, dry_run=pod.dry_run)

        answer: ClaimAnswer = await self._submit(build)
        return answer

    async def release(self, req: ReleaseRequest) -> ReleaseAnswer:
        def build() -> ReleaseAnswer:
            pod = self.state.pods.get(req.pod_id)
            if pod is None or pod.busy != req.job_id:
                return ReleaseAnswer(released=False, dry_run=self.dry_run)
            self._record(CloudPodReleased(pod_id=req.pod_id, job_id=req.job_id,
                                          dry_run=pod.dry_run), key=req.pod_id)  # fmt: skip
            return ReleaseAnswer(released=True, dry_run=pod.dry_run)

        answer: ReleaseAnswer = await self._submit(build)
        return answer

    # -- pods ----------------------------------------------------------------------

    async def _spawn(self, gpu_type: str, code: str, reason: str, *, forced: bool) -> str:
        """Reserve, create, record; the pod id. ``forced``: a person asked (no queue rule)."""
        ref = "spawn-" + self.bus.ids.new()

        def reserve() -> None:
            settings, state = self.settings, self.state
            live = len(state.live_pods())
            if live >= settings.max_pods:
                raise EndpointError(409, f"max_pods: {live} pods live, max_pods "
                                         f"{settings.max_pods}")  # fmt: skip
            amount = cap.spawn_amount(settings)
            verdict = self._hold(ref, "pod", amount, f"a {gpu_type} pod",
                                 price=settings.max_price_per_hour)  # fmt: skip
            if not verdict.ok:
                raise EndpointError(402, verdict.reason)
            self._record(CloudAutoscaled(
                action="spawn", code=code, reason=reason, queue=len(state.waiting),
                threshold=settings.autoscale_threshold, pods=live, max_pods=settings.max_pods,
                dry_run=self.dry_run), key=ref)  # fmt: skip

        await self._submit(reserve)
        settings = self.settings
        spec = PodSpec(name=f"gpuroute-{ref[6:]}"[:60], image=settings.docker_image,
                       gpu_id=gpu_type, ports=[f"{settings.pod_port}/http"])  # fmt: skip
        try:
            info = await self.client.create(spec)
        except CloudError as e:
            why = f"create failed: {e}"
            await self._submit(lambda: self._record(CloudCostReleased(
                ref=ref, released_usd=usd(self._held(ref)), reason=why,
                dry_run=self.dry_run), key=ref))  # fmt: skip
            raise EndpointError(502, str(e)) from e

        def spawned() -> None:
            self._record(CloudPodSpawned(
                pod_id=info.id, name=info.name, gpu_type=gpu_type,
                cost_per_hour=info.cost_per_hour, reservation=ref, reason=reason,
                instance=self.instance, dry_run=info.dry_run), key=info.id)  # fmt: skip

        await self._submit(spawned)
        if info.cost_per_hour > settings.max_price_per_hour:
            await self._terminate(info.id, "price", f"pod {info.id} costs "
                                  f"${info.cost_per_hour:g}/h, over max_price_per_hour "
                                  f"${settings.max_price_per_hour:g}")  # fmt: skip
        return info.id

    def _held(self, ref: str) -> int:
        held = self.state.held.get(ref)
        return held.outstanding if held is not None else 0

    async def _provider_terminate(self, pod_id: str) -> None:
        with contextlib.suppress(PodNotFound):  # forgotten by the provider: gone
            await self.client.terminate(pod_id)

    def _terminated(self, pod_id: str, code: TerminateCode, reason: str) -> None:
        pod = self.state.pods.get(pod_id)
        if pod is None or pod.ended_ts is not None:
            return
        now = self.clock.now()
        billed = billed_seconds(pod.spawned_ts, now)
        self._record(CloudPodTerminated(
            pod_id=pod_id, code=code, reason=reason, billed_s=billed,
            cost_usd=usd(max(pod.cost_u, pod_cost_u(pod.cost_per_hour, billed))),
            dry_run=pod.dry_run), key=pod_id)  # fmt: skip
        self._running_since.pop(pod_id, None)
        self.log.info("pod terminated", extra={"fields": {"pod": pod_id, "code": code,
                                                          "reason": reason}})  # fmt: skip

    async def _terminate(self, pod_id: str, code: TerminateCode, reason: str) -> None:
        """Terminate at the provider, then record it with its cost (and the decision)."""
        await self._provider_terminate(pod_id)

        def build() -> None:
            settings = self.settings
            if code not in ("request", "shutdown_all", "gone"):
                self._record(CloudAutoscaled(
                    action="terminate", code=code, reason=reason, queue=len(self.state.waiting),
                    threshold=settings.autoscale_threshold, pods=len(self.state.live_pods()),
                    max_pods=settings.max_pods, pod_id=pod_id, dry_run=self.dry_run),
                    key=pod_id)  # fmt: skip
            self._terminated(pod_id, code, reason)

        await self._submit(build)

    # -- checks --------------------------------------------------------------------

    async def _check_loop(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.settings.check_interval_s)

    async def check(self) -> None:
        """One check: watch the pods, charge and top up, then autoscale."""
        settings = self.settings
        for pod in list(self.state.live_pods()):
            await self._watch(pod.pod_id, settings)
        stop: list[tuple[str, str]] = []

        def charge() -> None:
            now = self.clock.now()
            self._expire_claims(now)
            past_cap = day_of(now) in self.state.limit_days
            for pod in self.state.live_pods():
                self._record(CloudCostUpdated(
                    ref=pod.pod_id, provider="runpod-pod",
                    billed_s=billed_seconds(pod.spawned_ts, now),
                    cost_usd=usd(pod_cost_u(pod.cost_per_hour,
                                            billed_seconds(pod.spawned_ts, now))),
                    price=pod.cost_per_hour, dry_run=pod.dry_run), key=pod.pod_id)  # fmt: skip
                amount = cap.top_up_amount(pod, self._held(pod.pod_id), settings, now)
                verdict = cap.Verdict(True, 0, 0) if amount == 0 and not past_cap else (
                    self._hold(pod.pod_id, "pod", amount, f"pod {pod.pod_id}'s next window",
                               price=pod.cost_per_hour))  # fmt: skip
                if not verdict.ok:
                    stop.append((pod.pod_id, verdict.reason))

        await self._submit(charge)
        for pod_id, reason in stop:
            await self._terminate(pod_id, "cost_cap", reason)
        for decision in plan(self.state, settings, self.clock.now()):
            try:
                if decision.action == "spawn":
                    await self._spawn(settings.gpu_type, decision.code, decision.reason,
                                      forced=False)  # fmt: skip
                elif decision.pod_id is not None:
                    await self._terminate(decision.pod_id, decision.code, decision.reason)  # type: ignore[arg-type]
            except EndpointError as e:
                self.log.warning("autoscaling step refused", extra={"fields": {
                    "action": decision.action, "reason": e.message}})  # fmt: skip
                break
        self.checked += 1

    def _expire_claims(self, now: float) -> None:
        """Release every pod whose claim's lease has expired (a scheduler that died
        holding it: its attempt will never release it; the writer only)."""
        for pod in self.state.live_pods():
            if pod.busy is None or (expires := self.state.claim_expires(pod)) >= now:
                continue
            reason = (f"claim lease expired: scheduler instance {pod.claim_instance} "
                      f"silent for {now - expires + pod.claim_lease_s:.1f}s (lease "
                      f"{pod.claim_lease_s:g}s); job {pod.busy} left the pod")  # fmt: skip
            self._record(CloudPodReleased(pod_id=pod.pod_id, job_id=pod.busy, reason=reason,
                                          dry_run=pod.dry_run), key=pod.pod_id)  # fmt: skip
            self.log.warning(reason, extra={"fields": {"pod": pod.pod_id}})

    async def _watch(self, pod_id: str, settings: CloudSettings) -> None:
        """Ask the provider how the pod is; ready, stuck or gone is recorded."""
        try:
            info = await self.client.get(pod_id)
        except PodNotFound:
            await self._submit(lambda: self._terminated(pod_id, "gone", "the provider has no "
                                                        "such pod any more"))  # fmt: skip
            return
        except CloudError as e:
            self.log.warning("pod watch failed", extra={"fields": {"pod": pod_id, "error": str(e)}})
            return
        now = self.clock.now()
        if info.status == "RUNNING":
            self._running_since.setdefault(pod_id, now)
        if info.status in ("EXITED", "TERMINATED"):
            await self._terminate(pod_id, "gone", f"the provider reports {info.status}")
            return
        why = stuck(info, self._running_since.get(pod_id), now, settings.pods.stuck_after_s)
        if why is not None:
            await self._terminate(pod_id, "stuck" if info.status == "RUNNING" else "error", why)
            return
        url = info.http_url(settings.pod_port)
        pod = self.state.pods.get(pod_id)
        if url is not None and pod is not None and pod.ready_ts is None:
            await self._submit(lambda: self._record(CloudPodReady(
                pod_id=pod_id, url=url, port=settings.pod_port, dry_run=info.dry_run),
                key=pod_id))  # fmt: skip

    # -- routes --------------------------------------------------------------------

    async def status(self, _: NoBody) -> Any:
        await self.follower.require_ready(self.name)
        return views.status(self.state, self.settings, self.clock.now(), self.dry_run,
                            getattr(self.client, "reason", ""))  # fmt: skip

    async def cost(self, _: NoBody) -> Any:
        await self.follower.require_ready(self.name)
        return views.cost(self.state, self.settings, self.clock.now(), self.dry_run)

    async def pods(self, _: NoBody) -> Any:
        await self.follower.require_ready(self.name)
        return views.pod_list(self.state, self.clock.now(), self.dry_run)

    async def spawn_pod(self, req: SpawnRequest) -> Any:
        pod_id = await self._spawn(
            req.gpuType or self.settings.gpu_type,
            "request",
            "spawn requested (POST /api/cloud/spawn)",
            forced=True,
        )
        return views.spawned(self.state, pod_id, self.clock.now(), self.dry_run)

    async def terminate_pod(self, ref: PodRef) -> Any:
        await self.follower.require_ready(self.name)
        pod = self.state.pods.get(ref.podId)
        if pod is None:
            raise EndpointError(404, f"no pod {ref.podId!r}")
        if pod.ended_ts is None:
            await self._terminate(ref.podId, "request", "terminate requested")
        return views.pod_view(self.state.pods[ref.podId], self.clock.now())

    async def shutdown_all(self, _: NoBody) -> Any:
        await self.follower.require_ready(self.name)
        ids = [p.pod_id for p in self.state.live_pods()]
        for pod_id in ids:
            await self._terminate(pod_id, "shutdown_all", "emergency shutdown-all requested")
        return views.shutdown(ids, self.dry_run)

    async def put_config(self, body: dict[str, Any]) -> Any:
        """Change ``[cloud]`` settings; a bad value, an unknown key or a change to
        ``pods`` (the pod client's start-up settings, which a running client would not
        follow) is a 400 naming it, and nothing changes."""

        def build() -> Any:
            current = msgspec.to_builtins(self.settings)
            try:
                new = msgspec.convert({**current, **body}, CloudSettings)
            except msgspec.ValidationError as e:
                raise EndpointError(400, f"invalid config: {e}") from e
            raw = msgspec.to_builtins(new)
            pods = sorted(f"pods.{k}" for k, v in raw["pods"].items() if v != current["pods"][k])
            if pods:
                raise EndpointError(400, f"invalid config: {', '.join(pods)} cannot change "
                                    "while the service runs: [cloud.pods] configures the pod "
                                    "client at start-up; set it in the config file (or "
                                    "GPUROUTE_CLOUD_PODS_*) and restart")  # fmt: skip
            changed = sorted(k for k in raw if raw[k] != current.get(k))
            if changed:
                self._record(CloudConfigUpdated(settings=raw, changed=changed,
                                                dry_run=self.dry_run), key="config")  # fmt: skip
            return views.config_answer(raw, changed, self.dry_run)

        return await self._submit(build)


__all__ = ["CloudService", "micro"]
