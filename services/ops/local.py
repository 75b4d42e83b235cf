"""``gpuroute serve NAME --metrics-port P``: one process's own figures, scraped
from the process itself (no NATS round trip, so they answer while NATS is down).

A service deployed alone has no gateway beside it to ask; this endpoint gives
Prometheus what that service knows of itself: its ``nats.micro`` endpoints'
requests, errors and time (the gateway's ``/metrics`` families, same names and
labels, so one dashboard reads both), its follower's position and what it
skipped, its faults, and how often the runner replaced it. Collected on the
event loop at each scrape, so nothing races the service's own updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from services.ops import metrics
from services.runtime.errors import GpurouteError
from services.runtime.follower import Follower
from services.runtime.service import Service


class Instances(Protocol):
    """What the runner's Supervisor tells: the running instance (None while it is
    being replaced) and how often it was replaced."""

    def current(self, name: str) -> Service | None: ...

    def restarts(self, name: str) -> int: ...


def _follower(service: Service) -> Follower[Any] | None:
    found = getattr(service, "follower", None)  # the convention of every folding service
    return found if isinstance(found, Follower) else None


def families(instances: Instances, names: Sequence[str]) -> list[Metric]:
    """Every family of the services ``names`` as they are now."""
    up = GaugeMetricFamily("gpuroute_service_up", "1 while an instance runs (0: being "
                           "replaced).", labels=["service"])  # fmt: skip
    restarts = CounterMetricFamily("gpuroute_service_restarts",
                                   "Fresh instances the runner started after one broke.",
                                   labels=["service"])  # fmt: skip
    faults = GaugeMetricFamily("gpuroute_service_faults",
                               "Background tasks dead or waiting to restart now.",
                               labels=["service"])  # fmt: skip
    position = GaugeMetricFamily("gpuroute_follower_position",
                                 "Store position the service has folded up to.",
                                 labels=["service"])  # fmt: skip
    skipped = CounterMetricFamily("gpuroute_follower_skipped",
                                  "Messages and stored events the follower skipped.",
                                  labels=["service"])  # fmt: skip
    srv: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        service = instances.current(name)
        up.add_metric([name], 0 if service is None else 1)
        restarts.add_metric([name], instances.restarts(name))
        if service is None:
            continue
        faults.add_metric([name], len(service.faults()))
        if service.micro is not None:
            srv[name] = [service.micro.stats().to_dict()]
        follower = _follower(service)
        if follower is not None:
            position.add_metric([name], follower.position)
            skipped.add_metric([name], follower.skipped)
    return [up, restarts, faults, position, skipped, *metrics.endpoints(srv)]


async def serve(
    instances: Instances, names: Sequence[str], host: str, port: int
) -> tuple[web.AppRunner, str]:
    """Start ``GET /metrics`` on ``host:port`` (0: any free port); the runner
    to clean up on stop, and the URL it listens on. A port taken is a
    :class:`GpurouteError` naming it."""

    async def scrape(_: web.Request) -> web.Response:
        body = metrics.render(families(instances, names))
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise GpurouteError(f"cannot serve metrics on {host}:{port}: {e.strerror}") from e
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}/metrics"
