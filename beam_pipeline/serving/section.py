"""The ``serving:`` config section (every key is documented in the README's "Serving" section)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from beam_pipeline.core.errors import ConfigError

GRPC_SERVERS = ("h2", "grpcio")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def check_model_name(name: str, where: str) -> str:
    """A model name is a plain folder name: letters, digits, - and _ (never a path)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(
            f"{where}: expected a model name of letters, digits, - or _; received {name!r}"
        )
    return name


@dataclass(frozen=True)
class ServingSection:
    """``serving:`` in the config.

    Attributes:
        host, port, grpc_port: where to listen (``--host``/``--port``/``--grpc-port`` win);
            ``grpc_port: 0`` turns gRPC off.
        models: more models to serve, ``NAME: DIR`` (DIR holds integer version folders, TF
            Serving's model base path); the pipeline's own model is always served from
            ``push.serving_dir``.
        version_labels: ``{model: {label: version}}`` (TF Serving's ``version_labels``).
        max_batch_size: rows per model call at most.
        batch_timeout_ms: how long a batch may wait, once a model worker is free, for the rows
            of the clients the last batch answered (a lone client never waits; 0, the default:
            take what is queued at once). See `serving.batching`.
        batch_threads: model calls that may run at once (per model version).
        model_threads: TensorFlow's inter-op and intra-op threads in the server (0: its
            default, one per core). 1 runs a batch's graph on the model thread itself: at a
            server's batch sizes, handing its small ops to other threads cost more CPU than it
            saved (see docs/serving.md).
        max_queued_rows: rows waiting for the model before requests are refused with 503.
        max_body_bytes: a larger request body is refused with 413.
        poll_seconds: how often the serving folders are checked for new or removed versions.
        log_predictions: write the prediction log under ``{pipeline.root}/logs/predictions``.
        log_exclude_features: raw features never written to the log.
        log_queue_size: feedback requests waiting for the log writer before new ones are dropped
            (predictions are written by the model thread, see `serving.log`).
        log_segment_bytes, log_segment_seconds: a log segment is closed (made immutable) when
            it reaches this size or age.
        access_log: one log line per HTTP request.
        workers: serve processes sharing the ports (``SO_REUSEPORT``; `serving.workers`);
            ``--workers`` wins.
        grpc_server: the gRPC transport: ``h2`` (`serving.h2grpc`, HTTP/2 on the event loop)
            or ``grpcio`` (grpc.aio).
    """

    host: str = "127.0.0.1"
    port: int = 8501
    grpc_port: int = 8500
    models: dict[str, str] = field(default_factory=dict)
    version_labels: dict[str, dict[str, int]] = field(default_factory=dict)
    max_batch_size: int = 64
    batch_timeout_ms: float = 0.0
    batch_threads: int = 1
    model_threads: int = 1
    max_queued_rows: int = 10_000
    max_body_bytes: int = 10 * 1024 * 1024
    poll_seconds: float = 2.0
    log_predictions: bool = True
    log_exclude_features: list[str] = field(default_factory=list)
    log_queue_size: int = 10_000
    log_segment_bytes: int = 64 * 1024 * 1024
    log_segment_seconds: float = 300.0
    access_log: bool = False
    workers: int = 1
    grpc_server: str = "h2"

    def __post_init__(self) -> None:
        for name in self.models:
            check_model_name(name, f"serving.models.{name}")
        for name, labels in self.version_labels.items():
            check_model_name(name, f"serving.version_labels.{name}")
            for label, version in labels.items():
                check_model_name(label, f"serving.version_labels.{name}.{label}")
                if not isinstance(version, int) or version < 1:
                    raise ConfigError(
                        f"serving.version_labels.{name}.{label}: expected a version >= 1; "
                        f"received {version!r}"
                    )
        positive = {
            "max_batch_size": self.max_batch_size,
            "batch_threads": self.batch_threads,
            "max_queued_rows": self.max_queued_rows,
            "max_body_bytes": self.max_body_bytes,
            "poll_seconds": self.poll_seconds,
            "log_queue_size": self.log_queue_size,
            "log_segment_bytes": self.log_segment_bytes,
            "log_segment_seconds": self.log_segment_seconds,
            "workers": self.workers,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"serving.{key}: expected > 0; received {value!r}")
        if not isinstance(self.model_threads, int) or self.model_threads < 0:
            raise ConfigError(
                f"serving.model_threads: expected an integer >= 0; received {self.model_threads!r}"
            )
        if self.batch_timeout_ms < 0:
            raise ConfigError(
                f"serving.batch_timeout_ms: expected >= 0; received {self.batch_timeout_ms!r}"
            )
        if self.grpc_server not in GRPC_SERVERS:
            raise ConfigError(
                f"serving.grpc_server: expected one of {', '.join(GRPC_SERVERS)}; "
                f"received {self.grpc_server!r}"
            )
        for key in ("port", "grpc_port"):
            value = getattr(self, key)
            if not 0 <= value <= 65535:
                raise ConfigError(f"serving.{key}: expected a port 0..65535; received {value!r}")
