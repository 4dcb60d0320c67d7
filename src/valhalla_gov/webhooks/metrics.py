"""Webhook metrics: a per-process counter, and gauges read from the store.

The gauges are computed at scrape time from the outbox, so every worker and
replica reports the same truth (like the other state gauges).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..storage.protocol import Store

DELIVERIES = Counter(
    "valhalla_webhook_deliveries_total",
    "Webhook delivery attempts by result: delivered, failed (will retry), gave_up.",
    ["result"],
)


class WebhookCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        from ..storage.errors import StorageError
        from . import store as hook_store

        try:
            hooks = hook_store.load_webhooks(self._store)
            cursors = hook_store.load_outbox(self._store).cursors if hooks else {}
            newest = hook_store.newest_seq(self._store) if hooks else 0
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
            state = cursors.get(hook.id)
            last = state.last_seq if state else hook.start_seq
            failing.add_metric([hook.name], 1 if state is not None and state.failing else 0)
            gave_up.add_metric([hook.name], state.gave_up if state else 0)
            lag.add_metric([hook.name], max(newest - last, 0))
        yield failing
        yield gave_up
        yield lag
