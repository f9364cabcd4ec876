"""The config sections of the training pipeline's stages, one frozen dataclass each.

They live apart from the stages so that loading a config (and every read-only command: ``runs``,
``models``, ``lineage``) needs neither Beam nor TensorFlow: this module imports only the standard
library, core and evaluation's import-light catalog and threshold model. A stage module imports its
section from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from beam_pipeline.core.comparators import ComparatorSection
from beam_pipeline.core.config import path
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.evaluation.catalog import ALWAYS, DEFAULT_METRICS, KNOWN_METRICS, metrics_for  # noqa: F401
from beam_pipeline.evaluation.thresholds import MetricThreshold, SliceThreshold, check_thresholds

# The stages in pipeline order (the orchestrator derives the same order from the DAG).
STAGE_ORDER = [
    "ingest",
    "statistics",
    "schema",
    "validate",
    "transform",
    "tune",
    "train",
    "evaluate",
    "push",
]

# validate
CATEGORIES = ("schema", "skew", "drift")


def anomaly_kinds() -> frozenset[str]:
    """TFDV's anomaly kinds (protobuf only: no TFDV import)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    return frozenset(anomalies_pb2.AnomalyInfo.Type.keys())


# ---------------------------------------------------------------------------------------------
# ingest


@dataclass(frozen=True)
class SplitSection:
    ratios: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "eval": 0.2})
    key: str | None = None  # hash this column instead of the whole row: one key, one split

    def __post_init__(self) -> None:
        if "train" not in self.ratios:
            raise ConfigError(
                f"ingest.split.ratios: expected a 'train' split; received {self.ratios}"
            )
        bad = {k: v for k, v in self.ratios.items() if not v > 0}
        if bad:
            raise ConfigError(f"ingest.split.ratios: expected positive ratios; received {bad}")


@dataclass(frozen=True)
class IngestSection:
    source: str = path(None)  # a path or glob (local, gs://, s3://, hdfs://); may hold {SPAN}
    format: Literal["csv", "parquet", "jsonl", "tfrecord"] = "csv"
    columns: dict[str, Literal["int", "float", "string"]] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)  # columns read but not kept
    split: SplitSection = field(default_factory=SplitSection)
    span: int | None = None  # with {SPAN} in source: read this span; null: the latest
    spans: int = 1  # with {SPAN}: read this many spans, the chosen one and those just below it
    max_rejected_fraction: float = 0.0
    batch_size: int = 65536
    shards: int = 0  # files per split; 0: one per bundle, chosen by the runner (streams)
    split_bytes: int = 64 << 20  # an uncompressed CSV/JSONL file larger than this is read in ranges

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError("missing required key 'ingest.source'")
        if not 0 <= self.max_rejected_fraction <= 1:
            raise ConfigError(
                "ingest.max_rejected_fraction: expected a fraction in [0, 1]; "
                f"received {self.max_rejected_fraction!r}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"ingest.batch_size: expected >= 1; received {self.batch_size}")
        if self.shards < 0:
            raise ConfigError(f"ingest.shards: expected >= 0; received {self.shards}")
        if self.spans < 1:
            raise ConfigError(f"ingest.spans: expected >= 1; received {self.spans}")
        if self.split_bytes < 1:
            raise ConfigError(f"ingest.split_bytes: expected >= 1; received {self.split_bytes}")
        if self.split.key is not None and self.split.key in self.drop:
            raise ConfigError(
                f"ingest.split.key: column {self.split.key!r} is also in ingest.drop; a dropped "
                "column cannot decide the split"
            )


# ---------------------------------------------------------------------------------------------
# statistics


@dataclass(frozen=True)
class StatisticsSection:
    """The ``statistics:`` config section.

    Attributes:
        sample_rate: fraction of examples the statistics look at, in (0, 1].
        html: also write a browsable ``statistics.html`` per split.
    """

    sample_rate: float = 1.0
    html: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.sample_rate <= 1:
            raise ConfigError(
                f"statistics.sample_rate must be in (0, 1]; received {self.sample_rate!r}"
            )


# ---------------------------------------------------------------------------------------------
# schema


@dataclass(frozen=True)
class SchemaSection:
    """The ``schema:`` config section.

    Attributes:
        path: a curated ``schema.pbtxt`` (relative to the config file's folder); None: infer one
            from the train statistics.
        min_domain_mass: for an inferred schema, the fraction of a string feature's values that
            must lie in its domain (TFDV's ``distribution_constraints.min_domain_mass``); 1 means
            every value.
        reuse: without ``path``, infer once: later runs reuse the pipeline's schema (the newest
            one accepted with ``schema --accept``, else the one the newest passing run validated
            against) instead of inferring one from their own data; false: infer on every run.
    """

    path: str | None = path(None)
    min_domain_mass: float = 1.0
    reuse: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.min_domain_mass <= 1:
            raise ConfigError(
                f"schema.min_domain_mass must be in (0, 1]; received {self.min_domain_mass!r}"
            )


# ---------------------------------------------------------------------------------------------
# validate


@dataclass(frozen=True)
class ValidationSection:
    """The ``validation:`` config section (of the ``validate`` stage).

    Attributes:
        fail_on: what stops the run: categories (``schema``, ``skew``, ``drift``) or exact TFDV
            anomaly kinds (``ENUM_TYPE_UNEXPECTED_STRING_VALUES``). Other findings are reported.
        skew: train/eval skew thresholds.
        drift: thresholds against the previous passing run's statistics.
    """

    fail_on: list[str] = field(default_factory=lambda: list(CATEGORIES))
    skew: ComparatorSection = field(default_factory=ComparatorSection)
    drift: ComparatorSection = field(default_factory=ComparatorSection)

    def __post_init__(self) -> None:
        for i, item in enumerate(self.fail_on):
            if item not in CATEGORIES and item not in anomaly_kinds():
                raise ConfigError(
                    f"validation.fail_on[{i}] must be one of {list(CATEGORIES)} or a TFDV "
                    f"anomaly kind such as 'ENUM_TYPE_UNEXPECTED_STRING_VALUES'; received {item!r}"
                )
        self.skew.check("validation.skew")
        self.drift.check("validation.drift")

    def blocks(self, category: str, kind: str) -> bool:
        """Whether a finding of this category and kind stops the run."""
        return category in self.fail_on or kind in self.fail_on


# ---------------------------------------------------------------------------------------------
# transform


@dataclass(frozen=True)
class TransformSection:
    """``transform:`` in the config.

    Attributes:
        module: the user module defining ``preprocessing_fn`` (and optionally ``RAW_LABEL_KEYS``).
        shards: output files per split; at least the number of multi-worker training workers.
    """

    module: str | None = path(None)
    shards: int = 4

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ConfigError(f"transform.shards must be >= 1; received {self.shards!r}")


# ---------------------------------------------------------------------------------------------
# tune


@dataclass(frozen=True)
class TuneSection:
    """``tune:`` in the config.

    Attributes:
        enabled: false: output the search space's defaults (with ``train.hyperparameters``).
        algorithm: ``random`` (RandomSearch), ``bayesian`` (BayesianOptimization) or ``hyperband``.
        max_trials: trials to run (Hyperband sizes itself from ``epochs`` instead).
        objective: a metric the model logs, e.g. ``val_loss``, ``val_auc``, ``val_accuracy``.
        direction: ``min``/``max``; ``auto``: from the name (`metric_direction`: losses and
            errors such as ``val_rmse`` are minimised; an unknown name is a config error).
        epochs: epochs per trial (Hyperband: the most epochs any trial gets).
        steps_per_epoch: training batches per epoch of a trial.
        eval_steps: validation batches per epoch; null: the whole eval split.
        early_stopping_patience: stop a trial after this many epochs without progress; 0: off.
        executions_per_trial: models trained (and averaged) per trial.
        seed: the oracle's seed.
    """

    enabled: bool = True
    algorithm: Literal["random", "bayesian", "hyperband"] = "random"
    max_trials: int = 10
    objective: str = "val_loss"
    direction: Literal["auto", "min", "max"] = "auto"
    epochs: int = 3
    steps_per_epoch: int = 100
    eval_steps: int | None = None
    early_stopping_patience: int = 2
    executions_per_trial: int = 1
    seed: int = 42

    def __post_init__(self) -> None:
        for key in ("max_trials", "epochs", "steps_per_epoch", "executions_per_trial"):
            if getattr(self, key) < 1:
                raise ConfigError(f"tune.{key} must be >= 1; received {getattr(self, key)!r}")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ConfigError(f"tune.eval_steps must be >= 1 or null; received {self.eval_steps!r}")
        _ = self.objective_direction  # an unknown objective name is a config error now
        if self.early_stopping_patience < 0:
            raise ConfigError(
                "tune.early_stopping_patience must be >= 0 (0: off); "
                f"received {self.early_stopping_patience!r}"
            )

    @property
    def objective_direction(self) -> str:
        from beam_pipeline.evaluation.direction import metric_direction

        return metric_direction(self.objective, self.direction, "tune.objective")


# ---------------------------------------------------------------------------------------------
# train


@dataclass(frozen=True)
class TrainSection:
    """``train:`` in the config.

    Attributes:
        module: the model module (``LABEL_KEY``, ``build_model``).
        strategy: ``default`` | ``mirrored`` | ``multi_worker`` (cluster from ``TF_CONFIG``).
        epochs: the most epochs (early stopping may end sooner).
        steps_per_epoch: batches per epoch; null: one pass over the train split.
        batch_size: the global batch size (split among replicas).
        eval_steps: eval batches per validation; null: the whole eval split.
        early_stopping_patience: epochs without progress before stopping; 0: off.
        early_stopping_monitor: the metric early stopping watches (``val_`` + a compiled metric).
        early_stopping_direction: ``min``/``max``; ``auto``: from the name (`metric_direction`:
            ``val_rmse`` is minimised, ``val_auc`` maximised; an unknown name is a config error).
        shuffle_buffer: records in the shuffle buffer.
        cache: keep the train split's parsed batches in memory after the first epoch (it must
            fit); later epochs reshuffle the batches' order, not their composition.
        seed: seeds TensorFlow and the input order.
        hyperparameters: values that override the tuned ones (and are held fixed while tuning).
    """

    module: str | None = path(None)
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 256
    eval_steps: int | None = None
    early_stopping_patience: int = 3
    early_stopping_monitor: str = "val_loss"
    early_stopping_direction: Literal["auto", "min", "max"] = "auto"
    shuffle_buffer: int = 10_000
    cache: bool = False
    seed: int = 42
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "shuffle_buffer"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1; received {getattr(self, key)!r}")
        for key in ("steps_per_epoch", "eval_steps"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"train.{key} must be >= 1 or null; received {value!r}")
        if self.early_stopping_patience:  # an unknown direction is a config error now, not later
            from beam_pipeline.evaluation.direction import metric_direction

            metric_direction(
                self.early_stopping_monitor,
                self.early_stopping_direction,
                "train.early_stopping_monitor",
            )
        if self.early_stopping_patience < 0:
            raise ConfigError(
                "train.early_stopping_patience must be >= 0 (0: off); "
                f"received {self.early_stopping_patience!r}"
            )


# ---------------------------------------------------------------------------------------------
# evaluate


@dataclass(frozen=True)
class EvaluateSection:
    """``evaluate:`` in the config.

    Attributes:
        task: ``auto`` (classification when the model's training metrics include auc or
            accuracy, else regression; binary or multi-class from the prediction width),
            ``binary``, ``multiclass`` or ``regression``.
        metrics: metrics to report and check; empty: the task's defaults.
        label_key: the label; null: the Model's ``label_key`` property.
        slices: feature names or feature crosses (lists): ``[payment_type, [payment_type,
            trip_start_hour]]``. Rows missing a slice feature are in no slice of that spec.
        bucket_boundaries: numeric slice features sliced by buckets ``[a, b)``:
            ``{fare: [5, 10, 20]}``.
        thresholds: metric -> `MetricThreshold` on the whole eval split (change bounds against
            the baseline model).
        slice_thresholds: per-slice thresholds (the slice's features must be one of ``slices``).
        require_approval: a blessed model waits for ``beam-pipeline approve`` before push.
        compare_to_baseline: false: absolute bounds only, even when a blessed model exists.
        split: the split evaluated.
        batch_size: examples per model call.
        decision_threshold: binary predictions >= this are positive (accuracy/precision/recall).
        auc_buckets: histogram buckets for AUC.
    """

    task: Literal["auto", "binary", "multiclass", "regression"] = "auto"
    metrics: list[str] = field(default_factory=list)
    label_key: str | None = None
    slices: list[Any] = field(default_factory=list)
    bucket_boundaries: dict[str, list[float]] = field(default_factory=dict)
    thresholds: dict[str, MetricThreshold] = field(default_factory=dict)
    slice_thresholds: list[SliceThreshold] = field(default_factory=list)
    require_approval: bool = False
    compare_to_baseline: bool = True
    split: str = "eval"
    batch_size: int = 1024
    decision_threshold: float = 0.5
    auc_buckets: int = 10_000

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in KNOWN_METRICS]
        if unknown:
            raise ConfigError(
                f"evaluate.metrics: unknown metric {unknown[0]!r}; expected some of "
                f"{sorted(KNOWN_METRICS)}"
            )
        specs = self.slice_specs  # checks the shape of every entry
        for name, bounds in self.bucket_boundaries.items():
            if list(bounds) != sorted(bounds) or len(set(bounds)) != len(bounds) or not bounds:
                raise ConfigError(
                    f"evaluate.bucket_boundaries.{name}: expected strictly increasing numbers; "
                    f"received {bounds!r}"
                )
        for metric in self.thresholds:
            self._check_metric(metric, f"evaluate.thresholds.{metric}")
        check_thresholds(self.thresholds, "evaluate.thresholds")
        for i, st in enumerate(self.slice_thresholds):
            where = f"evaluate.slice_thresholds[{i}]"
            if tuple(sorted(st.slice)) not in specs:
                raise ConfigError(
                    f"{where}.slice: features {sorted(st.slice)} are not one of evaluate.slices "
                    f"{[list(s) for s in specs]}"
                )
            for metric in st.thresholds:
                self._check_metric(metric, f"{where}.thresholds.{metric}")
            check_thresholds(st.thresholds, f"{where}.thresholds")
        if self.batch_size < 1 or self.auc_buckets < 2:
            raise ConfigError(
                "evaluate.batch_size must be >= 1 and evaluate.auc_buckets >= 2; received "
                f"{self.batch_size!r}, {self.auc_buckets!r}"
            )
        if self.task != "auto":
            self.check_task(self.task)
        if not 0 < self.decision_threshold < 1:
            raise ConfigError(
                f"evaluate.decision_threshold must be in (0, 1); received {self.decision_threshold}"
            )

    def check_task(self, task: str) -> None:
        """Every metric named in this section fits ``task`` (AUC on a regression does not)."""
        kinds = ["binary", "multiclass"] if task == "classification" else [task]
        fits = set().union(*(metrics_for(k) for k in kinds))
        named = [("evaluate.metrics", m) for m in self.metrics]
        named += [(f"evaluate.thresholds.{m}", m) for m in self.thresholds]
        for i, st in enumerate(self.slice_thresholds):
            named += [(f"evaluate.slice_thresholds[{i}].thresholds.{m}", m) for m in st.thresholds]
        for where, metric in named:
            if metric not in fits:
                raise ConfigError(
                    f"{where}: {metric!r} does not apply to a {task} model; expected one of "
                    f"{sorted(fits)}"
                )

    def _check_metric(self, metric: str, where: str) -> None:
        allowed = set(self.metrics) | set(ALWAYS) if self.metrics else KNOWN_METRICS
        if metric not in allowed:
            raise ConfigError(
                f"{where}: metric {metric!r} is not computed; expected one of {sorted(allowed)}"
            )

    @property
    def slice_specs(self) -> list[tuple[str, ...]]:
        """Every slice spec as a sorted tuple of feature names."""
        specs = []
        for i, s in enumerate(self.slices):
            names = [s] if isinstance(s, str) else s
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) and n for n in names)
            ):
                raise ConfigError(
                    f"evaluate.slices[{i}]: expected a feature name or a list of feature names; "
                    f"received {s!r}"
                )
            specs.append(tuple(sorted(names)))
        return specs


# ---------------------------------------------------------------------------------------------
# push


@dataclass(frozen=True)
class PushSection:
    """``push:`` in the config.

    Attributes:
        serving_dir: models land in ``{serving_dir}/{pipeline.name}/{version}/``; relative paths
            are resolved against the config file's folder.
    """

    serving_dir: str = path("serving")
