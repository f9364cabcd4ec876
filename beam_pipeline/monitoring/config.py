"""The ``monitor:`` config section: the window, the label, the alert rules and retraining."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from beam_pipeline.core.config import path
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.evaluation.thresholds import MetricThreshold, SliceThreshold, check_thresholds

ALERT_KINDS = ("skew", "drift", "quality", "prediction_shift", "bad_input")


@dataclass(frozen=True)
class DistanceRule:
    """``monitor.skew`` (the window against the training data) or ``monitor.drift`` (against the
    previous window): a threshold per feature, on by default for every logged feature.

    Numeric features are counted on the reference's own deciles (the training statistics'
    quantile boundaries) on both sides and compared by the Jensen-Shannon divergence of those
    counts; categorical features by the L-infinity distance of their value frequencies (TFDV's
    comparator, whose anomaly messages the report keeps). Calibrated on the bundled taxi data:
    see docs/monitoring.md for the distances of a drifted and of an undrifted window.

    Attributes:
        numeric: threshold for every numeric feature; null: numeric features are not compared.
        categorical: threshold for every categorical feature; null: not compared.
        threshold: one threshold for every feature of either kind (overrides the two above).
        features: feature -> its own threshold (overrides all of the above).
        min_count: a feature with fewer values than this in the window (or the reference) is not
            compared. Above it, a numeric threshold is raised where needed to the divergence
            that sampling noise alone exceeds once in a thousand (`js_noise_floor`).
    """

    numeric: float | None = 0.01
    categorical: float | None = 0.1
    threshold: float | None = None
    features: dict[str, float] = field(default_factory=dict)
    min_count: int = 500

    def threshold_of(self, feature: str, categorical: bool) -> float | None:
        if feature in self.features:
            return self.features[feature]
        if self.threshold is not None:
            return self.threshold
        return self.categorical if categorical else self.numeric

    def check(self, key: str) -> None:
        values = {
            f"{key}.numeric": self.numeric,
            f"{key}.categorical": self.categorical,
            f"{key}.threshold": self.threshold,
        }
        values.update({f"{key}.features.{name}": t for name, t in self.features.items()})
        for where, value in values.items():
            if value is not None and not 0 < value <= 1:
                raise ConfigError(f"{where} must be in (0, 1]; received {value!r}")
        if self.min_count < 1:
            raise ConfigError(f"{key}.min_count must be >= 1; received {self.min_count!r}")


@dataclass(frozen=True)
class RetrainSection:
    """``monitor.retrain``: how labelled traffic becomes a new span and a new model.

    Attributes:
        span_dir: where new spans are written, ``span-{N}/data.csv`` (default
            ``{pipeline.root}/monitor/spans``).
        spans: train on the newest this many spans (1: the new span alone).
        min_rows: do not retrain with fewer labelled rows than this.
        overrides: ``section.key=value`` overrides for the retraining run (e.g.
            ``tune.enabled=false``), applied after the ingest overrides.
    """

    span_dir: str | None = path(None)
    spans: int = 1
    min_rows: int = 200
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.spans < 1 or self.min_rows < 1:
            raise ConfigError(
                "monitor.retrain.spans and monitor.retrain.min_rows must be >= 1; received "
                f"{self.spans!r}, {self.min_rows!r}"
            )
        for i, item in enumerate(self.overrides):
            if "=" not in item or "." not in item.split("=", 1)[0]:
                raise ConfigError(
                    f"monitor.retrain.overrides[{i}]: expected section.key=value; received {item!r}"
                )


def default_quality() -> dict[str, MetricThreshold]:
    """Live quality rules on by default: relative drops against evaluation time (a metric the
    task does not have is skipped: ``auc``/``accuracy`` for classification, ``rmse`` for
    regression)."""
    return {
        "auc": MetricThreshold(max_drop_rel=0.1),
        "accuracy": MetricThreshold(max_drop_rel=0.15),
        "rmse": MetricThreshold(max_drop_rel=0.25),
    }


def default_every_slice() -> dict[str, MetricThreshold]:
    return {
        "accuracy": MetricThreshold(max_drop_rel=0.2),
        "rmse": MetricThreshold(max_drop_rel=0.3),
    }


@dataclass(frozen=True)
class MonitorSection:
    """The ``monitor:`` config section (see docs/monitoring.md). Every alert is on by default.

    Attributes:
        window: the window's length, ending at ``--until`` (default now): ``24h``, ``90m``, ``7d``;
            ``--since`` overrides it.
        logs: the log folder (``{logs}/predictions/{name}``, ``{logs}/feedback/{name}``); default
            ``{pipeline.root}/logs``.
        batch_results: also read the JSON Lines outputs of ``score`` jobs (InferenceResult).
        label_column: the raw column a feedback label is a value of; default: the transform
            module's single ``RAW_LABEL_KEYS`` entry, else the model's label.
        label_type: ``int | float | string``; default: the column's type in the training data.
        label_values: feedback label -> column value, for labels that need a mapping
            (``{"yes": 1, "no": 0}``); labels not listed are kept as they are.
        min_labelled: quality rules on all traffic of a version need this many labelled rows.
        min_slice_labelled: quality rules on a slice need this many labelled rows of the slice.
        quality: metric -> `MetricThreshold` (evaluate's threshold model) on all labelled
            traffic of a version; change bounds (``max_drop``, ``min_change_abs``, ...) are
            against the same version's evaluation-time value. Default: relative drops of ``auc``,
            ``accuracy`` (classification) and ``rmse`` (regression).
        every_slice: metric -> `MetricThreshold` on every slice of ``evaluate.slices`` that has
            ``min_slice_labelled`` rows; default: relative drops of ``accuracy`` / ``rmse``.
        slice_quality: rules for named slices (their features must be one of
            ``evaluate.slices``).
        skew: logged features against the model's training data (`DistanceRule`).
        drift: logged features against the previous monitoring window (`DistanceRule`).
        prediction_shift: alert when the Jensen-Shannon divergence between the window's prediction
            histogram and the eval split's (at evaluation time) exceeds this; null: off.
        min_predictions: the prediction shift needs this many predictions of a version.
        bad_input_rate: alert when more than this fraction of the window's logged records had a
            corrupt line or a feature value of the wrong type; null: off.
        bins: histogram bins of predicted probabilities (prediction distribution and shift).
        retrain_on: alert kinds that trigger retraining by themselves (``skew``, ``drift``,
            ``quality``, ``prediction_shift``, ``bad_input``); ``monitor --retrain`` retrains
            regardless.
        retrain: see `RetrainSection`.
        watch_interval: seconds between two ``monitor --watch`` rounds.
    """

    window: str = "24h"
    logs: str | None = path(None)
    batch_results: bool = True
    label_column: str | None = None
    label_type: Literal["int", "float", "string"] | None = None
    label_values: dict[str, Any] = field(default_factory=dict)
    min_labelled: int = 200
    min_slice_labelled: int = 200
    quality: dict[str, MetricThreshold] = field(default_factory=default_quality)
    every_slice: dict[str, MetricThreshold] = field(default_factory=default_every_slice)
    slice_quality: list[SliceThreshold] = field(default_factory=list)
    skew: DistanceRule = field(default_factory=DistanceRule)
    drift: DistanceRule = field(default_factory=DistanceRule)
    prediction_shift: float | None = 0.1
    min_predictions: int = 500
    bad_input_rate: float | None = 0.02
    bins: int = 10
    retrain_on: list[str] = field(default_factory=list)
    retrain: RetrainSection = field(default_factory=RetrainSection)
    watch_interval: float = 3600.0

    def __post_init__(self) -> None:
        from beam_pipeline.monitoring.times import parse_time

        try:
            parse_time(self.window)
        except ValueError as exc:
            raise ConfigError(f"monitor.window: {exc}") from None
        if self.window[-1:] not in ("s", "m", "h", "d"):
            raise ConfigError(
                f"monitor.window: expected an age (30m, 24h, 7d); received {self.window!r}"
            )
        for i, kind in enumerate(self.retrain_on):
            if kind not in ALERT_KINDS:
                raise ConfigError(
                    f"monitor.retrain_on[{i}]: expected one of {list(ALERT_KINDS)}; "
                    f"received {kind!r}"
                )
        check_thresholds(self.quality, "monitor.quality")
        check_thresholds(self.every_slice, "monitor.every_slice")
        for i, rule in enumerate(self.slice_quality):
            check_thresholds(rule.thresholds, f"monitor.slice_quality[{i}].thresholds")
        self.skew.check("monitor.skew")
        self.drift.check("monitor.drift")
        if self.prediction_shift is not None and not 0 < self.prediction_shift <= 1:
            raise ConfigError(
                f"monitor.prediction_shift must be in (0, 1]; received {self.prediction_shift!r}"
            )
        if self.bad_input_rate is not None and not 0 <= self.bad_input_rate < 1:
            raise ConfigError(
                f"monitor.bad_input_rate must be in [0, 1); received {self.bad_input_rate!r}"
            )
        counts = {
            "min_labelled": self.min_labelled,
            "min_slice_labelled": self.min_slice_labelled,
            "min_predictions": self.min_predictions,
        }
        for key, value in counts.items():
            if value < 1:
                raise ConfigError(f"monitor.{key} must be >= 1; received {value!r}")
        if self.bins < 2 or self.watch_interval <= 0:
            raise ConfigError(
                "monitor.bins must be >= 2 and monitor.watch_interval > 0; received "
                f"{self.bins!r}, {self.watch_interval!r}"
            )
