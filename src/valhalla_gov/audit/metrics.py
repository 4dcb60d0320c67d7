"""The audit chain head as gauges, read from the store at scrape time.

Scraped and kept by Prometheus, the head is an anchor stored apart from the
log: ``valhalla audit verify --anchor SEQ:HASH`` with any past value catches
lines cut from the tail since, which the chain alone cannot show.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..storage.protocol import Store


class AuditHeadCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        from ..storage.errors import StorageError
        from .service import chain_head

        try:
            head = chain_head(store=self._store)
        except StorageError:
            return  # valhalla_storage_up says so already
        seq = GaugeMetricFamily(
            "valhalla_audit_head_seq", "Seq of the newest chained audit event (0: none)."
        )
        seq.add_metric([], head.seq)
        yield seq
        if head.hash is not None:
            info = GaugeMetricFamily(
                "valhalla_audit_head",
                "1, labelled with the newest chained audit event's seq and hash (the anchor).",
                labels=["seq", "hash"],
            )
            info.add_metric([str(head.seq), head.hash], 1)
            yield info
