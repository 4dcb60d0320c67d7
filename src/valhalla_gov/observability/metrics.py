"""Prometheus counters and histograms: the low-level instruments any part
may bump. They know no feature; the gauges that read the features' state are
collected at the top (:mod:`valhalla_gov.metrics_endpoint`).

Counters and histograms are per process; with ``--workers N`` the CLI points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory so a scrape of any worker
sums them all.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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

# Every instrument above, for a registry that is not multiprocess.
INSTRUMENTS = (REQUESTS, LATENCY, AUDIT_EVENTS, RATE_LIMITED, BOOKKEEPING_FAILURES)
