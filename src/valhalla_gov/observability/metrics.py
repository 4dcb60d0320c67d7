"""Prometheus metrics.

Counters and histograms are per process; with ``--workers N`` the CLI points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory so a scrape of any worker
sums them all. Gauges (active session, band, health) are read from the store
at scrape time, so every worker and replica reports the same truth.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..context import AppContext

REQUESTS = Counter(
    "valhalla_http_requests_total",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "valhalla_http_request_duration_seconds",
    "HTTP request latency by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AUDIT_EVENTS = Counter(
    "valhalla_audit_events_total", "Audit events written, by event name.", ["event"]
)
RATE_LIMITED = Counter(
    "valhalla_rate_limit_rejections_total", "Requests refused with 429, by rule.", ["rule"]
)
BOOKKEEPING_FAILURES = Counter(
    "valhalla_bookkeeping_write_failures_total",
    "Bookkeeping writes that failed without failing the request (e.g. a token's last-used "
    "stamp on a full disk), by what was being written.",
    ["what"],
)


class StateCollector(Collector):
    """Gauges computed from the store when Prometheus scrapes."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterable[Metric]:
        from ..cone.canon import BANDS
        from ..go.session_service import get_session
        from ..health.service import get_health_status
        from ..storage.errors import StorageError

        ctx = self._ctx
        up = GaugeMetricFamily("valhalla_storage_up", "1 when the store could be read.")
        try:
            session = get_session(store=ctx.store)
            health = get_health_status(store=ctx.store, clock=ctx.clock, watcher=ctx.watcher)
        except StorageError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        active = GaugeMetricFamily("valhalla_go_session_active", "1 while a GO session is active.")
        active.add_metric([], 1 if session.active else 0)
        yield active
        band = GaugeMetricFamily(
            "valhalla_cone_band", "1 for the current cone band.", labels=["band"]
        )
        for band_name in BANDS:
            band.add_metric([band_name], 1 if health.cone_band == band_name else 0)
        yield band
        status = GaugeMetricFamily(
            "valhalla_health_status", "1 for the current health status.", labels=["status"]
        )
        for status_name in ("green", "yellow", "red"):
            status.add_metric([status_name], 1 if health.status == status_name else 0)
        yield status


def render(ctx: AppContext) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for metric in (REQUESTS, LATENCY, AUDIT_EVENTS, RATE_LIMITED, BOOKKEEPING_FAILURES):
            registry.register(metric)
    registry.register(StateCollector(ctx))
    return generate_latest(registry)
