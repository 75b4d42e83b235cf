"""Where a job goes after its first decision: out of ``wait``, and away from a failed provider.

The advisor decides once per job (``job.advised``). Two things ask it again,
through its ``gpuroute.advisor.advise`` endpoint (a decision, no event):

- A job advised ``wait`` (``wait_for_local_gpu``: it fits once something frees)
  is ``job.delayed`` with code ``wait`` and the advisor's reason, and is
  re-advised on a timer with exponential backoff (``READVISE_S``: 0.25 s
  doubling to 8 s) and at once whenever a job ends anywhere (a local GPU or a
  remote queue slot may have freed; the scheduler folds every ``job.*``).
  Waiting jobs of the same shape (the same spec as the advisor sees it) share
  one ask per tick (:class:`Waiting`): the advisor decides from the spec and
  its own state alone, so each of them would have got that very answer.
  The scheduler does not read telemetry itself: the timer bounds how late a
  freed GPU is seen (8 s at worst). When the answer is no longer ``wait`` the
  job is ``job.rerouted`` from ``wait`` to that target (rule and reason of the
  new decision) and goes on to the budget; ``infeasible`` fails it.
- A retryable failure of a ``remote`` attempt (the provider failed or timed
  out, 429/5xx, no answer) asks for every other registered provider with an
  adapter as ``prefer``: the cheapest one the advisor honours
  (``preferred_target``) is the next target, recorded as ``job.rerouted``
  with both providers. None left: the next attempt stays where it was.

Provider ids are the advisor registry's (``runpod-pod``, ``hf-endpoints``);
the adapters service knows providers by kind (``runpod``, ``huggingface``):
:func:`adapter_of` maps one to the other through the registry's ``kind``.
A failure to reach the advisor is a :class:`ServiceCallError`; callers retry
later (waiting) or keep the target (reroute).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from logging import Logger
from typing import Any

import msgspec

from schemas.advisor import ADVISE_SUBJECT, Decision, JobAdvised
from schemas.jobs import JobSpec
from schemas.providers import PROVIDERS_LIST_SUBJECT, ProviderList
from services.runtime.bus import Bus
from services.runtime.errors import ServiceCallError

READVISE_S = (0.25, 8.0)
"""First and longest wait between two re-advices of a waiting job (seconds)."""
ADVISE_TIMEOUT_S = 5.0

ADAPTER_OF_KIND: dict[str, str] = {
    "runpod_pod": "runpod",
    "runpod_serverless": "runpod",
    "hf_endpoint": "huggingface",
    "replicate": "replicate",
    "modal": "modal",
}
"""Registry kind -> adapters provider name; ``local_gpu`` boxes have no adapter."""


def advice_of(decision: Decision) -> JobAdvised:
    return JobAdvised(target=decision.target, rule=decision.rule, reason=decision.reason,
                      provider=decision.provider_id,
                      estimate_usd=decision.estimate_usd)  # fmt: skip


class Placement:
    """The scheduler's questions to the advisor (its advise and provider list endpoints)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.asks = 0
        """Advise requests sent (a test reads it)."""

    async def advise(self, spec: JobSpec) -> Decision:
        self.asks += 1
        request = msgspec.structs.replace(spec, debug=False)
        decision: Decision = await self.bus.call(ADVISE_SUBJECT, request, Decision,
                                                 ADVISE_TIMEOUT_S)  # fmt: skip
        return decision

    async def adapters(self) -> dict[str, str]:
        """Registry id -> adapters provider name, for every provider that has one."""
        listed: ProviderList = await self.bus.call(PROVIDERS_LIST_SUBJECT, {}, ProviderList,
                                                   ADVISE_TIMEOUT_S)  # fmt: skip
        return {p.id: ADAPTER_OF_KIND[p.kind] for p in listed.providers
                if p.kind in ADAPTER_OF_KIND}  # fmt: skip

    async def adapter_of(self, provider: str | None) -> str | None:
        """The adapters' name for registry id ``provider`` (None: not known, no adapter)."""
        if provider is None:
            return None
        return (await self.adapters()).get(provider)

    async def next_provider(self, spec: JobSpec, tried: set[str]) -> Decision | None:
        """The cheapest provider not in ``tried`` that the advisor honours as
        ``prefer``; None when it honours none."""
        honoured = []
        for provider in sorted(set(await self.adapters()) - tried):
            decision = await self.advise(msgspec.structs.replace(spec, prefer=provider))
            if decision.rule == "preferred_target" and decision.target == "remote":
                honoured.append(decision)
        return min(honoured, key=_cost, default=None)


def _cost(decision: Decision) -> float:
    return float("inf") if decision.estimate_usd is None else decision.estimate_usd


Spawn = Callable[[Coroutine[Any, Any, None], str], Any]


class _Group:
    __slots__ = ("members", "spec")

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.members: list[asyncio.Future[Decision]] = []


class Waiting:
    """Jobs waiting for a target, grouped by shape; one advise per group per tick.

    :meth:`placed` returns the first decision that is not ``wait`` for its
    spec. Each group's loop (started with ``spawn``, ended when its last member
    is answered or cancelled) waits for :meth:`wake` or its backoff delay, asks
    once, and hands a placing answer to every member at once. An advisor that
    does not answer is logged and asked again at the next tick."""

    def __init__(self, placement: Placement, spawn: Spawn, log: Logger) -> None:
        self.placement = placement
        self._spawn = spawn
        self._log = log
        self._groups: dict[bytes, _Group] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something freed: every group asks now."""
        self._wake.set()
        self._wake = asyncio.Event()

    async def placed(self, spec: JobSpec) -> Decision:
        shape = msgspec.json.encode(msgspec.structs.replace(spec, debug=False))
        group = self._groups.get(shape)
        if group is None:
            group = self._groups[shape] = _Group(spec)
            self._spawn(self._ask(shape, group), "readvise")
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        group.members.append(future)
        return await future

    async def _ask(self, shape: bytes, group: _Group) -> None:
        delay = READVISE_S[0]
        try:
            while True:
                woken = self._wake
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), delay)
                delay = min(delay * 2, READVISE_S[1])
                group.members = [f for f in group.members if not f.done()]
                if not group.members:
                    return
                try:
                    decision = await self.placement.advise(group.spec)
                except ServiceCallError as e:
                    self._log.warning("re-advice failed; the jobs keep waiting", extra={
                        "fields": {"jobs": len(group.members), "error": str(e)}})  # fmt: skip
                    continue
                except Exception as e:  # a bug: the jobs fail with it, the service goes on
                    _answer(group.members, e)
                    return
                if decision.target != "wait":
                    _answer(group.members, decision)
                    return
        finally:
            if self._groups.get(shape) is group:
                del self._groups[shape]
            for future in group.members:  # stopping: none is left waiting for nobody
                if not future.done():
                    future.cancel()


def _answer(members: list[asyncio.Future[Decision]], answer: Decision | Exception) -> None:
    for future in members:
        if future.done():
            continue
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)
