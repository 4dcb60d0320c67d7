"""GET /metrics: the process counters plus gauges read from the features'
state at scrape time, so every worker and replica reports the same truth."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .audit.metrics import AuditHeadCollector
from .auth.deps import VIEWER
from .cone.canon import BANDS
from .context import AppContext, get_ctx
from .go.session_reads import get_session
from .health.models import STATUSES
from .health.publisher import HealthPublisher
from .observability.metrics import INSTRUMENTS
from .storage.errors import StorageError
from .webhooks.metrics import DELIVERIES, WebhookCollector

router = APIRouter(tags=["metrics"])


class StateCollector(Collector):
    """Gauges computed from the store when Prometheus scrapes."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterable[Metric]:
        ctx = self._ctx
        up = GaugeMetricFamily("valhalla_storage_up", "1 when the store could be read.")
        try:
            session = get_session(store=ctx.store)
            health = ctx.get(HealthPublisher).current()
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
        for status_name in STATUSES:
            status.add_metric([status_name], 1 if health.status == status_name else 0)
        yield status


def render(ctx: AppContext) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for metric in (*INSTRUMENTS, DELIVERIES):
            registry.register(metric)
    registry.register(StateCollector(ctx))
    registry.register(WebhookCollector(ctx.store))
    registry.register(AuditHeadCollector(ctx.store))
    return generate_latest(registry)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    dependencies=[Depends(VIEWER)],
)
def metrics(ctx: Annotated[AppContext, Depends(get_ctx)]) -> Response:
    """Request counts and latencies, session, band, health, audit, rate-limit and
    webhook figures."""
    return Response(render(ctx), media_type=CONTENT_TYPE_LATEST)
