"""Prometheus metrics from what the services already expose.

Nothing here keeps state: each scrape makes one :func:`cluster.observe` pass
(store stats, the store consumer, the budget snapshot, the scheduler's
job counts, ``$SRV.STATS``) and
one NVML probe, and :func:`render` writes them with the official
``prometheus-client`` in the text format. GPU families use the names of
NVIDIA's DCGM exporter where they overlap (``DCGM_FI_DEV_FB_USED`` in MiB,
``DCGM_FI_DEV_GPU_UTIL`` in percent, ``DCGM_FI_DEV_GPU_TEMP`` in C), so the
same dashboards work. A source that did not answer is missing from the
scrape and ``gpuroute_source_up{source}`` is 0 for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.ops.cluster import Observed
from services.ops.gpu import GpuProbe

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NS_PER_S = 1e9


def _store(seen: Observed) -> Iterator[Metric]:
    if seen.store is not None:
        yield CounterMetricFamily("gpuroute_events_stored", "Events in the SQLite event log.",
                                  value=seen.store.count)  # fmt: skip
        yield CounterMetricFamily("gpuroute_events_dead_lettered",
                                  "Messages the store refused and sent to the DLQ.",
                                  value=seen.store.dead_letters)  # fmt: skip
        yield GaugeMetricFamily("gpuroute_store_problems", "Problems the store reports now.",
                                value=len(seen.store.problems))  # fmt: skip
    if seen.consumer is not None:
        lag = GaugeMetricFamily("gpuroute_store_lag_events",
                                "Events in JetStream the store has not stored yet.",
                                labels=["kind"])  # fmt: skip
        lag.add_metric(["pending"], seen.consumer.num_pending or 0)
        lag.add_metric(["ack_pending"], seen.consumer.num_ack_pending or 0)
        yield lag
    if seen.stream is not None:
        yield GaugeMetricFamily("gpuroute_jetstream_stream_bytes", "Bytes of the event stream.",
                                value=seen.stream.state.bytes)  # fmt: skip


def endpoints(srv: dict[str, list[dict[str, Any]]]) -> Iterator[Metric]:
    """Per-endpoint families from ``$SRV.STATS`` replies (service -> instances' replies)."""
    labels = ["service", "endpoint"]
    requests = CounterMetricFamily(
        "gpuroute_endpoint_requests", "Requests answered, per nats.micro endpoint.", labels=labels
    )
    errors = CounterMetricFamily(
        "gpuroute_endpoint_errors", "Requests answered with an error.", labels=labels
    )
    seconds = CounterMetricFamily("gpuroute_endpoint_processing_seconds",
                                  "Time spent answering.", labels=labels)  # fmt: skip
    average = GaugeMetricFamily("gpuroute_endpoint_latency_seconds",
                                "Mean time to answer one request.", labels=labels)  # fmt: skip
    totals: dict[tuple[str, str], list[float]] = {}
    for service, instances in srv.items():
        for stats in instances:
            for ep in stats.get("endpoints") or []:
                key = (service, str(ep.get("subject") or ep.get("name")))
                t = totals.setdefault(key, [0.0, 0.0, 0.0])
                t[0] += float(ep.get("num_requests", 0))
                t[1] += float(ep.get("num_errors", 0))
                t[2] += float(ep.get("processing_time", 0)) / NS_PER_S
    for key, (n, e, s) in sorted(totals.items()):
        requests.add_metric(list(key), n)
        errors.add_metric(list(key), e)
        seconds.add_metric(list(key), s)
        average.add_metric(list(key), s / n if n else 0.0)
    yield from (requests, errors, seconds, average)


def _budget(seen: Observed) -> Iterator[Metric]:
    b = seen.budget
    if b is not None:
        depth = GaugeMetricFamily("gpuroute_budget_jobs", "Jobs in the budget, per queue.",
                                  labels=["queue"])  # fmt: skip
        for queue, jobs in (("queued", b.queued), ("delayed", b.delayed),
                            ("running", b.running)):  # fmt: skip
            depth.add_metric([queue], len(jobs))
        yield depth
        yield GaugeMetricFamily("gpuroute_budget_limit_vram_mib", "VRAM the budget allows jobs.",
                                value=b.limits.max_vram_mb)  # fmt: skip
        yield GaugeMetricFamily("gpuroute_budget_limit_ram_mib", "RAM the budget allows jobs.",
                                value=b.limits.max_mem_mb)  # fmt: skip
    spend = GaugeMetricFamily("gpuroute_spend_today_usd",
                              "Cloud spend reserved today. Always 0 until cloud pods land.",
                              labels=["kind"])  # fmt: skip
    spend.add_metric(["spent"], 0.0)
    yield spend


def _scheduler(seen: Observed) -> Iterator[Metric]:
    """Jobs per state and decisions per (rule, target), counted by the scheduler
    over its job table; absent when no scheduler answered (its source_up is 0)."""
    s = seen.scheduler
    if s is None:
        return
    jobs = GaugeMetricFamily("gpuroute_jobs", "Jobs in the scheduler's table, per state.",
                             labels=["state"])  # fmt: skip
    for state, n in sorted(s.jobs.items()):
        jobs.add_metric([state], n)
    decisions = CounterMetricFamily("gpuroute_decisions",
                                    "Jobs the advisor decided, per rule and (current) target.",
                                    labels=["rule", "target"])  # fmt: skip
    for d in s.decisions:
        decisions.add_metric([d.rule, d.target], d.count)
    yield from (jobs, decisions)


def _gpus(found: GpuProbe) -> Iterator[Metric]:
    labels = ["gpu", "UUID", "modelName"]
    used = GaugeMetricFamily("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (MiB).", labels=labels)
    free = GaugeMetricFamily("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (MiB).", labels=labels)
    util = GaugeMetricFamily("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", labels=labels)
    temp = GaugeMetricFamily("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", labels=labels)
    for g in found.gpus:
        values = [str(g.index), g.uuid or "", g.name or ""]
        if g.memory_used_mib is not None and g.memory_total_mib is not None:
            used.add_metric(values, g.memory_used_mib)
            free.add_metric(values, g.memory_total_mib - g.memory_used_mib)
        if g.utilization_pct is not None:
            util.add_metric(values, g.utilization_pct)
        if g.temperature_c is not None:
            temp.add_metric(values, g.temperature_c)
    yield from (used, free, util, temp)
    yield GaugeMetricFamily("gpuroute_gpus", "GPUs NVML sees on this node.", value=len(found.gpus))


def families(seen: Observed, found: GpuProbe) -> list[Metric]:
    up = GaugeMetricFamily("gpuroute_source_up", "1 when the source answered this scrape.",
                           labels=["source"])  # fmt: skip
    for source, value in (("store", seen.store), ("consumer", seen.consumer),
                          ("budget", seen.budget), ("scheduler", seen.scheduler),
                          ("jetstream", seen.account)):  # fmt: skip
        up.add_metric([source], 0 if value is None else 1)
    beats = GaugeMetricFamily(
        "gpuroute_service_instances",
        "Instances whose heartbeat answered the ping.",
        labels=["service"],
    )
    for service, instances in sorted(seen.heartbeats.items()):
        beats.add_metric([service], len(instances))
    return [
        up,
        beats,
        *_store(seen),
        *endpoints(seen.srv),
        *_budget(seen),
        *_scheduler(seen),
        *_gpus(found),
    ]


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def render(metrics: list[Metric], extra: Any = None) -> bytes:
    """The text format of ``metrics`` (and of ``extra`` collectors, e.g. the process's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(metrics))
    for collector in extra or ():
        registry.register(collector)
    return generate_latest(registry)
