"""Prometheus metrics of one server process (its own registry, exposed at ``GET /metrics`` and
TF Serving's ``GET /monitoring/prometheus/metrics``); with several workers (`serving.workers`),
the sum over them (prometheus_client's multiprocess mode) and the answering worker's
``process_*``."""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: one process, one start time
        r = self.registry = CollectorRegistry()
        # one of several workers: the values are kept in files of this folder (prometheus_client
        # chose so at import, from the same variable) and summed over the workers by `text`
        self.shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.own = CollectorRegistry() if self.shared_dir else r
        # process_cpu_seconds_total, process_resident_memory_bytes...: this process's
        ProcessCollector(registry=self.own)
        self.requests = Counter(
            "serving_requests",
            "Requests answered (every endpoint of a model: predict, status, metadata, ...)",
            ["model", "version", "api", "method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "serving_request_seconds",
            "Request latency (predict, classify, regress)",
            ["model", "api"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "serving_batch_rows",
            "Rows per model call",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "serving_batch_seconds",
            "Seconds per model call",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queued_rows = Gauge(
            "serving_queued_rows",
            "Rows waiting for the model",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.loaded = Gauge(
            "serving_loaded_versions",
            "1 for every loaded version",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.load_failures = Counter(
            "serving_load_failures", "Versions that failed to load", ["model"], registry=r
        )
        self.swaps = Counter(
            "serving_swaps", "Changes of the answering version", ["model"], registry=r
        )
        self.log_written = Counter(
            "serving_log_records_written",
            "Records written to the logs",
            ["kind", "model"],
            registry=r,
        )
        self.log_dropped = Counter(
            "serving_log_records_dropped",
            "Records dropped (log queue full or write failed)",
            ["kind", "model"],
            registry=r,
        )
        self.log_queue = Gauge(
            "serving_log_queue_depth",
            "Requests waiting for the log writer",
            registry=r,
            multiprocess_mode="livesum",
        )

    def text(self) -> bytes:
        if not self.shared_dir:
            return generate_latest(self.registry)
        summed = CollectorRegistry()
        MultiProcessCollector(summed, self.shared_dir)
        return generate_latest(summed) + generate_latest(self.own)
