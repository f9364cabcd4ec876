"""The ``monitor:`` config section: the window, the label, the alert rules and retraining."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from beam_pipeline.core.comparators import ComparatorSection
from beam_pipeline.core.config import path
from beam_pipeline.core.errors import ConfigError

ALERT_KINDS = ("skew", "drift", "quality", "prediction_shift")
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}


@dataclass(frozen=True)
class QualityRule:
    """Bounds on one live metric. ``lower`` / ``upper``: absolute. ``max_drop``: how much worse
    than at evaluation time (same model version, same slice) the metric may get; worse is lower
    for most metrics, higher for ``log_loss``, ``rmse`` and ``mae``. ``max_drop_rel``: the same,
    divided by the evaluation-time value."""

    lower: float | None = None
    upper: float | None = None
    max_drop: float | None = None
    max_drop_rel: float | None = None

    def __post_init__(self) -> None:
        if all(v is None for v in self.__dict__.values()):
            raise ConfigError(
                "monitor.quality: expected at least one of lower, upper, max_drop, "
                "max_drop_rel; received none"
            )


@dataclass(frozen=True)
class SliceQualityRule:
    """Rules for one slice named by its feature values: ``{payment_type: Cash}``."""

    slice: dict[str, Any]
    thresholds: dict[str, QualityRule]


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


@dataclass(frozen=True)
class MonitorSection:
    """The ``monitor:`` config section (see the README's "Feedback loop").

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
        min_labelled: quality rules fire only with at least this many labelled rows (per slice).
        quality: metric -> `QualityRule` on all labelled traffic of a version.
        slice_quality: per-slice rules; the slice's features must be one of ``evaluate.slices``.
        skew: logged features against the model's training data (validate's comparators:
            L-infinity for categorical features, Jensen-Shannon for numeric ones).
        drift: logged features against the previous monitoring window.
        prediction_shift: alert when the Jensen-Shannon divergence between the window's prediction
            histogram and the eval split's (at evaluation time) exceeds this; null: off.
        bins: histogram bins of predicted probabilities (prediction distribution and shift).
        retrain_on: alert kinds that trigger retraining by themselves (``skew``, ``drift``,
            ``quality``, ``prediction_shift``); ``monitor --retrain`` retrains regardless.
        retrain: see `RetrainSection`.
        watch_interval: seconds between two ``monitor --watch`` rounds.
    """

    window: str = "24h"
    logs: str | None = path(None)
    batch_results: bool = True
    label_column: str | None = None
    label_type: Literal["int", "float", "string"] | None = None
    label_values: dict[str, Any] = field(default_factory=dict)
    min_labelled: int = 100
    quality: dict[str, QualityRule] = field(default_factory=dict)
    slice_quality: list[SliceQualityRule] = field(default_factory=list)
    skew: ComparatorSection = field(default_factory=ComparatorSection)
    drift: ComparatorSection = field(default_factory=ComparatorSection)
    prediction_shift: float | None = None
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
        self.skew.check("monitor.skew")
        self.drift.check("monitor.drift")
        if self.prediction_shift is not None and not 0 < self.prediction_shift <= 1:
            raise ConfigError(
                f"monitor.prediction_shift must be in (0, 1]; received {self.prediction_shift!r}"
            )
        if self.min_labelled < 1 or self.bins < 2 or self.watch_interval <= 0:
            raise ConfigError(
                "monitor.min_labelled must be >= 1, monitor.bins >= 2 and monitor.watch_interval "
                f"> 0; received {self.min_labelled!r}, {self.bins!r}, {self.watch_interval!r}"
            )
