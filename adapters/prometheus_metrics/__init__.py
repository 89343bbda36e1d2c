"""Prometheus metrics with prometheus_client, per process: counters and histograms where things happen
(``instruments``), and what a scrape answers (``exposition``)."""

from adapters.prometheus_metrics.exposition import (
    MULTIPROC_DIR,
    MetricsExporter,
    QueueDepths,
    SharedStateCollector,
    Unsettled,
    bearer_matches,
    exposition,
    scrape_registry,
)
from adapters.prometheus_metrics.instruments import (
    FAL_WEBHOOKS,
    UNMATCHED,
    observe_fal_request,
    observe_http_request,
    observe_queue_wait,
    record_events,
    timing_verification,
)

__all__ = [
    "FAL_WEBHOOKS",
    "MULTIPROC_DIR",
    "UNMATCHED",
    "MetricsExporter",
    "QueueDepths",
    "SharedStateCollector",
    "Unsettled",
    "bearer_matches",
    "exposition",
    "observe_fal_request",
    "observe_http_request",
    "observe_queue_wait",
    "record_events",
    "scrape_registry",
    "timing_verification",
]
