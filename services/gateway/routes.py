"""The route table: every HTTP route of the gateway, declared once.

Each row names its method and path, the Struct of its query, body and path
parameters, the subject it calls (or the handler that answers it here), the
reply type, the timeout and the statuses its service may answer. ``app.py``
registers the handlers from it and ``openapi.py`` writes the OpenAPI document
from it, so the two cannot disagree. Queries and bodies use the strict
request types (``forbid_unknown_fields``): a typo is a 400 naming the field.
docs/gateway.md lists the routes for people.
"""

from __future__ import annotations

from typing import Any

from schemas import budget, cloud
from schemas import scheduler as sched
from schemas.adapters import (
    CANCEL,
    HEALTH,
    POLL,
    PROVIDERS_SUBJECT,
    SIMULATE,
    SUBMIT,
    CancelRequest,
    CancelResult,
    HealthRequest,
    HealthResponse,
    NoBody,
    PollQuery,
    PollRequest,
    PollResult,
    ProvidersRequest,
    ProvidersResponse,
    SimTranscript,
    SimulateRequest,
    SubmitRequest,
    SubmitResult,
)
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
    Decision,
    FlagsQuery,
    FlagsUpdate,
    FlagsView,
    GpuList,
    GpuListRequest,
    WhatIfAnswer,
    WhatIfRequest,
)
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
    ProvidersQuery,
    ProviderStats,
)
from schemas.subjects import STORE_ACKNOWLEDGE, STORE_READ
from schemas.system import StoreAcknowledgeRequest, StoredPage, StoreReadRequest, StoreStats
from services.gateway import dashboard, documents, health, hooks
from services.gateway.errors import BadRequest
from services.gateway.table import (
    COMMAND_TIMEOUT_S,
    PROVIDER_CALL_TIMEOUT_S,
    Inputs,
    Route,
)
from services.ops import http as ops_http
from services.ops.report import DoctorReport


def _events(i: Inputs) -> StoreReadRequest:
    """``patterns`` must be subject patterns; ``type``/``types`` are prefixes
    (``job.``), which no subject pattern may end with."""
    q: StoreReadRequest = i.query
    if q.patterns:
        hooks.check_patterns(q.patterns)
    return q


def _create_provider(i: Inputs) -> ProviderPut:
    return ProviderPut(profile=i.body, create=True)


def _put_provider(i: Inputs) -> ProviderPut:
    path_id = i.path(ProviderRef).id
    profile: ProviderProfile = i.body
    if profile.id != path_id:
        raise BadRequest(
            f"invalid body: `id` {profile.id!r} differs from the path's {path_id!r} - at `$.id`"
        )
    return ProviderPut(profile=profile)


def _poll(i: Inputs) -> PollRequest:
    return i.path(PollRequest, provider=i.query.provider, job_id=i.query.job_id)


def _cancel(i: Inputs) -> CancelRequest:
    return i.path(CancelRequest, provider=i.query.provider, job_id=i.query.job_id)


def _no_request(i: Inputs) -> ProvidersRequest:
    return ProvidersRequest()


GPU = "/api/providers/gpu"
ADAPTER_ERRORS = (404, 429, 502, 504)
"""A provider's failure (an ``AdapterFailure`` body; 429 with ``Retry-After``)."""


def _adapter(method: str, path: str, **row: Any) -> Route:
    """A row of the adapters service: its replies carry their own ``ok``."""
    return Route(method=method, path=GPU + path, tag="adapters", envelope=False,
                 errors=ADAPTER_ERRORS, **row)  # fmt: skip


def _no_body(_: Inputs) -> cloud.NoBody:
    return cloud.NoBody()


def _cloud(method: str, path: str, subject: str, **row: Any) -> Route:
    return Route(method=method, path="/api/cloud/" + path, subject=subject, tag="cloud", **row)


def _perf(method: str, path: str, **row: Any) -> Route:
    """A row of the budget service, under ``/api/perf``."""
    return Route(method=method, path="/api/perf" + path, tag="budget", **row)


TABLE: tuple[Route, ...] = (
    # -- the gateway itself ------------------------------------------------------
    Route(method="GET", path="/health", tag="gateway", handler=health.health, open=True,
          reply=health.HealthReply, errors=(503,),
          summary="NATS, the store, expected services and faults; 503 naming each problem"),
    Route(method="GET", path="/openapi.json", tag="gateway", handler=documents.openapi,
          reply=dict[str, Any], summary="this document (OpenAPI 3.1)"),
    Route(method="GET", path="/asyncapi.json", tag="gateway", handler=documents.asyncapi,
          reply=dict[str, Any], errors=(404,),
          summary="the AsyncAPI 3.0 document of every NATS subject"),
    Route(method="GET", path="/docs", tag="gateway", handler=documents.docs_page,
          content_type="text/html",
          summary="a page that renders this document for people (text/html)"),
    *dashboard.ROUTES,  # the live dashboard (docs/dashboard.md): open, it holds no data
    # -- operating gpuroute (docs/runbook.md) ------------------------------------------
    Route(method="GET", path="/api/ops/doctor", tag="ops", handler=ops_http.doctor,
          reply=DoctorReport, errors=(503,),
          summary="every doctor check with evidence and next step; 503 when one fails"),
    Route(method="GET", path="/metrics", tag="ops", handler=ops_http.scrape,
          content_type="text/plain", errors=(503,),
          summary="Prometheus text format: store, lag, endpoints, budget, spend, GPUs (DCGM)"),
    # -- events ------------------------------------------------------------------
    Route(method="GET", path="/api/events", tag="events", subject=STORE_READ,
          query=StoreReadRequest, reply=StoredPage, request=_events,
          summary="stored events: after, limit, type/types (prefixes), patterns, key, last"),
    Route(method="POST", path="/api/store/acknowledge", tag="events",
          subject=STORE_ACKNOWLEDGE, body=StoreAcknowledgeRequest, reply=StoreStats,
          summary="acknowledge the store's notices (a stream reset); /health turns 200 again"),
    Route(method="GET", path="/api/modder/hooks", tag="events", subject=STORE_READ,
          query=hooks.HooksQuery, reply=hooks.HooksReply, handler=hooks.hooks,
          summary="the newest events whose type matches a topic (a subject pattern)"),
    Route(method="GET", path="/api/modder/hooks/ws", tag="events", query=hooks.HooksWsQuery,
          handler=hooks.hooks_ws, own_query=True, websocket=True,
          summary="WebSocket: stored events after a position, then live, one frame each"),
    # -- the compute advisor -----------------------------------------------------
    Route(method="GET", path="/api/gpu/list", subject=GPUS_SUBJECT, query=GpuListRequest,
          reply=GpuList, summary="devices, flags, the raw sample with debug", tag="advisor"),
    Route(method="POST", path="/api/compute/advise", subject=ADVISE_SUBJECT,
          body=JobSpec, reply=Decision,
          summary="where a job would run and why (no job is created)", tag="advisor"),
    Route(method="POST", path="/api/compute/costs", subject=COSTS_SUBJECT, body=CostRequest,
          reply=CostPreview, errors=(404,), tag="advisor",
          summary="cost preview of every target (404: the queue names no provider)"),
    Route(method="GET", path="/api/providers", subject=PROVIDERS_LIST_SUBJECT,
          query=ProviderListQuery, reply=ProviderList,
          summary="every registered provider (of one kind)", tag="advisor"),
    Route(method="POST", path="/api/providers", subject=PROVIDERS_PUT_SUBJECT,
          body=ProviderProfile, reply=ProviderChanged, request=_create_provider,
          status=201, timeout=COMMAND_TIMEOUT_S, errors=(409,),
          summary="register a provider (409 if the id exists)", tag="advisor"),
    Route(method="GET", path="/api/providers/stats", subject=PROVIDERS_STATS_SUBJECT,
          query=ProvidersQuery, reply=ProviderStats,
          summary="totals, by kind, storage, persisted", tag="advisor"),
    Route(method="GET", path="/api/providers/{id}", subject=PROVIDERS_GET_SUBJECT,
          query=ProvidersQuery, path_type=ProviderRef, reply=ProviderProfile, errors=(404,),
          summary="one provider's profile", tag="advisor"),
    Route(method="PUT", path="/api/providers/{id}", subject=PROVIDERS_PUT_SUBJECT,
          body=ProviderProfile, body_from_path=True, path_type=ProviderRef,
          reply=ProviderChanged, request=_put_provider, timeout=COMMAND_TIMEOUT_S,
          summary="create or replace a provider (the body's id defaults to the path's)",
          tag="advisor"),
    Route(method="DELETE", path="/api/providers/{id}", subject=PROVIDERS_DELETE_SUBJECT,
          path_type=ProviderRef, reply=ProviderChanged, timeout=COMMAND_TIMEOUT_S,
          errors=(404,), summary="remove a provider", tag="advisor"),
    Route(method="GET", path="/api/flags", subject=FLAGS_GET_SUBJECT, query=FlagsQuery,
          reply=FlagsView, summary="every flag with its value and default", tag="advisor"),
    Route(method="PUT", path="/api/flags", subject=FLAGS_SET_SUBJECT, body=FlagsUpdate,
          reply=FlagsView, timeout=COMMAND_TIMEOUT_S,
          summary="change flags (records only the ones whose value changes)", tag="advisor"),
    Route(method="POST", path="/api/advisor/whatif", subject=WHATIF_SUBJECT, body=WhatIfRequest,
          reply=WhatIfAnswer, timeout=COMMAND_TIMEOUT_S, errors=(404, 409), tag="advisor",
          summary="a job's recorded decision re-run with other thresholds and prices, old vs"
                  " new; records nothing (404: no decision for the job; 409: cannot re-run)"),
    Route(method="GET", path="/api/advisor/config", subject=CONFIG_SUBJECT,
          query=AdvisorConfigQuery, reply=AdvisorConfigView, tag="advisor",
          summary="the thresholds the advisor decides with and its config digest (read-only)"),
    # -- the GPU provider adapters -----------------------------------------------
    _adapter("POST", "/health", subject=HEALTH, body=HealthRequest,
             reply=HealthResponse, timeout=PROVIDER_CALL_TIMEOUT_S,
             summary="health of every provider, or the one named"),
    _adapter("POST", "/submit", subject=SUBMIT, body=SubmitRequest,
             reply=SubmitResult, timeout=PROVIDER_CALL_TIMEOUT_S,
             summary="submit a job to a provider (dry-run without its token)"),
    _adapter("GET", "/poll/{id}", subject=POLL, query=PollQuery,
             body=NoBody, path_type=PollRequest, reply=PollResult, request=_poll,
             timeout=PROVIDER_CALL_TIMEOUT_S,
             summary="status, artifacts and logs of a remote job (id as submit returned it)"),
    _adapter("POST", "/cancel/{id}", subject=CANCEL, query=PollQuery,
             body=NoBody, path_type=CancelRequest, reply=CancelResult, request=_cancel,
             timeout=PROVIDER_CALL_TIMEOUT_S, summary="cancel a remote job"),
    _adapter("GET", "/providers", subject=PROVIDERS_SUBJECT, body=NoBody,
             reply=ProvidersResponse, request=_no_request,
             summary="live or dry-run per provider, and what is missing to go live"),
    _adapter("POST", "/simulate", subject=SIMULATE, body=SimulateRequest,
             reply=SimTranscript, summary="a seeded, deterministic transcript of a job"),
    # -- the budget service (docs/perf.md) ----------------------------------------
    _perf("GET", "/budgets", subject=budget.SNAPSHOT, query=budget.Snapshot,
          reply=budget.BudgetSnapshot,
          summary="limits, live metrics, queued/delayed/running jobs, assets"),
    _perf("POST", "/budgets/apply", subject=budget.APPLY, body=budget.LimitsApply,
          reply=budget.BudgetSnapshot, timeout=COMMAND_TIMEOUT_S,
          summary="change limits (400 naming a bad one; nothing changes)"),
    _perf("POST", "/budgets/jobs/register", subject=budget.REGISTER, body=budget.JobRegister,
          reply=budget.JobAnswer, timeout=COMMAND_TIMEOUT_S, errors=(409, 429),
          summary="register a job with its perf: queued, delayed (reason) or rejected"),
    _perf("POST", "/budgets/jobs/start", subject=budget.START, body=budget.JobRef,
          reply=budget.JobAnswer, timeout=COMMAND_TIMEOUT_S, errors=(404, 409),
          summary="start a queued job (409 with the reason when it may not)"),
    _perf("POST", "/budgets/jobs/finish", subject=budget.FINISH, body=budget.JobFinish,
          reply=budget.JobAnswer, timeout=COMMAND_TIMEOUT_S, errors=(404,),
          summary="a job ended: frees its budget, re-evaluates at once"),
    _perf("POST", "/budgets/jobs/refresh", subject=budget.REFRESH, body=budget.Refresh,
          reply=budget.Transitions, timeout=COMMAND_TIMEOUT_S,
          summary="re-evaluate now; the transitions it made"),
    _perf("GET", "/budgets/jobs/poll", subject=budget.POLL, query=budget.Poll,
          reply=budget.Transitions, summary="transitions after a change number"),
    _perf("POST", "/budgets/assets/register", subject=budget.ASSET_REGISTER,
          body=budget.AssetRegister, reply=budget.AssetAnswer, timeout=COMMAND_TIMEOUT_S,
          errors=(429,), summary="register a lazily loaded asset"),
    _perf("POST", "/budgets/assets/touch", subject=budget.ASSET_TOUCH, body=budget.AssetRef,
          reply=budget.AssetAnswer, timeout=COMMAND_TIMEOUT_S, errors=(404,),
          summary="an asset was used (LRU order)"),
    _perf("POST", "/budgets/assets/evict", subject=budget.ASSET_EVICT, body=budget.AssetEvict,
          reply=budget.Evicted, timeout=COMMAND_TIMEOUT_S,
          summary="evict least recently used assets until target_mb is freed"),
    _perf("POST", "/profiler/mark", subject=budget.MARK, body=budget.Mark,
          reply=budget.Recorded, timeout=COMMAND_TIMEOUT_S, summary="record a mark"),
    _perf("POST", "/profiler/span", subject=budget.SPAN, body=budget.Span,
          reply=budget.Recorded, timeout=COMMAND_TIMEOUT_S,
          summary="record timed code (one run, or an aggregate)"),
    _perf("GET", "/profiler/dashboard", subject=budget.DASHBOARD, query=budget.DashboardQuery,
          reply=budget.Dashboard, errors=(409,),
          summary="top_time, top_memory, categories, recent marks (409: flag off)"),
    _perf("POST", "/profiler/reset", subject=budget.RESET, body=budget.ProfilerResetRequest,
          reply=budget.Recorded, timeout=COMMAND_TIMEOUT_S, summary="reset the dashboard"),
    _perf("GET", "/health", subject=budget.HEALTH, query=budget.Health,
          reply=budget.PerfHealth, summary="perf flags, queue counts, top offenders"),
    # -- the scheduler (docs/scheduler.md) ----------------------------------------
    Route(method="POST", path="/api/jobs", subject=sched.SUBMIT, body=sched.JobRequest,
          reply=sched.JobAccepted, timeout=COMMAND_TIMEOUT_S, tag="scheduler",
          summary="submit a job: the spec plus executor and payload; its decision and budget"),
    Route(method="GET", path="/api/jobs", subject=sched.LIST, query=sched.JobsQuery,
          reply=sched.JobList, tag="scheduler", errors=(404,),
          summary="jobs, newest first: state, limit, after (a job id)"),
    Route(method="GET", path="/api/jobs/{id}", subject=sched.GET, path_type=sched.JobRef,
          reply=sched.JobView, errors=(404,), tag="scheduler",
          summary="one job: state, decision, budget, attempts, progress, artifacts, history"),
    Route(method="POST", path="/api/jobs/{id}/cancel", subject=sched.CANCEL,
          path_type=sched.JobRef, reply=sched.JobView, timeout=COMMAND_TIMEOUT_S,
          errors=(404, 409), tag="scheduler", summary="cancel a job (409: it already ended)"),
    Route(method="GET", path="/api/jobs/{id}/artifacts/{name}", subject=sched.ARTIFACT,
          path_type=sched.ArtifactRef, reply=sched.ArtifactBody, errors=(404, 413),
          tag="scheduler", summary="an artifact or its .json provenance sidecar (base64)"),
    # -- cloud workers (docs/cloud.md) ---------------------------------------------
    _cloud("GET", "status", cloud.STATUS, reply=cloud.CloudStatus, request=_no_body,
           summary="pods, jobs, total cost, the config"),
    _cloud("GET", "cost", cloud.COST, reply=cloud.CloudCost, request=_no_body,
           summary="cost per pod and serverless; today's spend and reservations vs the cap"),
    _cloud("GET", "pods", cloud.PODS, reply=cloud.PodList, request=_no_body,
           summary="every pod: status, busy, jobs, cost, idle time"),
    _cloud("POST", "spawn", cloud.SPAWN, body=cloud.SpawnRequest, reply=cloud.SpawnAnswer,
           timeout=PROVIDER_CALL_TIMEOUT_S, errors=(402, 409),
           summary="spawn a pod (402: past the daily cap; 409: max_pods)"),
    _cloud("POST", "terminate/{podId}", cloud.TERMINATE, path_type=cloud.PodRef,
           reply=cloud.PodView, errors=(404,), timeout=PROVIDER_CALL_TIMEOUT_S,
           summary="terminate a pod (404 names an unknown pod)"),
    _cloud("POST", "shutdown-all", cloud.SHUTDOWN_ALL, reply=cloud.ShutdownAnswer,
           request=_no_body, timeout=PROVIDER_CALL_TIMEOUT_S,
           summary="emergency: terminate every pod now"),
    _cloud("PUT", "config", cloud.CONFIG, body=dict[str, Any], reply=cloud.ConfigAnswer,
           timeout=COMMAND_TIMEOUT_S, summary="change [cloud] settings (400 names a bad key)"),
)  # fmt: skip
