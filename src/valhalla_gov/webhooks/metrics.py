"""Webhook metrics: a per-process counter, and gauges read from the store at
scrape time, so every worker and replica reports the same truth."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..storage.errors import StorageError
from ..storage.protocol import Store
from .models import Outbox
from .store import load_outbox, load_webhooks, newest_seq

DELIVERIES = Counter(
    "valhalla_webhook_deliveries_total",
    "Webhook delivery attempts by result: delivered, failed (will retry), gave_up.",
    ["result"],
)


class WebhookCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        try:
            hooks = load_webhooks(self._store)
            outbox = load_outbox(self._store) if hooks else Outbox()
            newest = newest_seq(self._store) if hooks else 0
        except StorageError:
            return  # valhalla_storage_up says so already
        failing = GaugeMetricFamily(
            "valhalla_webhook_failing",
            "1 while a webhook's last delivery attempt failed.",
            labels=["webhook"],
        )
        gave_up = GaugeMetricFamily(
            "valhalla_webhook_gave_up_events",
            "Events given up on after the retry period, per webhook.",
            labels=["webhook"],
        )
        lag = GaugeMetricFamily(
            "valhalla_webhook_lag_events",
            "Audit events written after a webhook's cursor (an upper bound on its backlog).",
            labels=["webhook"],
        )
        for hook in hooks:
            state = outbox.cursor(hook)
            failing.add_metric([hook.name], int(state.failing))
            gave_up.add_metric([hook.name], state.gave_up)
            lag.add_metric([hook.name], max(newest - state.last_seq, 0))
        yield from (failing, gave_up, lag)
