"""What the monitor needs to know about a model version, found through ML Metadata lineage.

Model → its ``train`` execution → the raw ``Examples`` (column types, the eval split), the
``Schema`` and the ``TransformGraph`` (the label function); Schema → its ``schema`` execution →
the ``ExampleStatistics`` of the training data; the newest ``ModelBlessing`` / ``ModelEvaluation``
of the model → its evaluation-time metrics, overall and per slice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from beam_pipeline.core import registry
from beam_pipeline.core.artifacts import (
    STATS_FILE,
    Artifact,
    metrics_path,
    saved_model_dir,
    schema_path,
)
from beam_pipeline.core.metadata import Store


@dataclass
class ModelInfo:
    """One model version as the monitor sees it (picklable: strings, numbers, dicts)."""

    version: int
    model_id: int
    saved_model: str
    columns: dict[str, str]  # the training data's raw columns -> int | float | string
    raw_features: list[str]
    label_key: str | None
    raw_label_keys: list[str] = field(default_factory=list)
    transform_graph: str | None = None
    examples_id: int | None = None
    eval_examples: str | None = None  # file pattern of the eval split's tf.Examples
    train_examples: str | None = None  # file pattern of the train split's tf.Examples
    train_statistics: str | None = None  # FeatureStats.pb of the train split
    statistics_id: int | None = None
    schema: str | None = None  # schema.pbtxt
    eval_metrics: dict[str, Any] = field(default_factory=dict)  # overall, at evaluation time
    eval_slices: dict[str, dict[str, Any]] = field(default_factory=dict)
    task: str | None = None
    eval_split: str = "eval"


def model_info(store: Store, version: int) -> ModelInfo:
    """Everything `ModelInfo` holds for a version of this pipeline."""
    model = registry.model_by_version(store, version)
    producer = store.producer(model.id)
    inputs: dict[str, Artifact] = store.execution_inputs(producer) if producer else {}
    examples, graph, schema = (
        inputs.get("examples"),
        inputs.get("transform_graph"),
        inputs.get("schema"),
    )
    info = ModelInfo(
        version=version,
        model_id=int(model.id),  # type: ignore[arg-type]
        saved_model=str(saved_model_dir(model)),
        columns=dict((examples.properties.get("columns") if examples else None) or {}),
        raw_features=list(model.properties.get("raw_features") or []),
        label_key=model.properties.get("label_key"),
        raw_label_keys=list((graph.properties.get("raw_label_keys") if graph else None) or []),
        transform_graph=graph.uri if graph else None,
        examples_id=examples.id if examples else None,
    )
    if schema is not None:
        info.schema = str(schema_path(schema))
        schema_exec = store.producer(schema.id)
        stats = store.execution_inputs(schema_exec).get("statistics") if schema_exec else None
        if stats is None and examples is not None:
            stats = _statistics_of(store, examples)
        if stats is not None and (stats.split_dir("train") / STATS_FILE).is_file():
            info.train_statistics = str(stats.split_dir("train") / STATS_FILE)
            info.statistics_id = stats.id
    _evaluation(store, model, info, examples)
    return info


def _statistics_of(store: Store, examples: Artifact) -> Artifact | None:
    for exec_id in store.consumers(examples.id):
        out = store.execution_outputs(exec_id).get("statistics")
        if out is not None and out.type == "ExampleStatistics":
            return out
    return None


def _evaluation(store: Store, model: Artifact, info: ModelInfo, examples: Artifact | None) -> None:
    """Evaluation-time metrics (the newest evaluation of this model) and the eval split."""
    for exec_id in sorted(store.consumers(model.id), reverse=True):
        outputs = store.execution_outputs(exec_id)
        evaluation = outputs.get("evaluation")
        if evaluation is None or evaluation.type != "ModelEvaluation":
            continue
        if store.execution_inputs(exec_id).get("model", Artifact("", "")).id != model.id:
            continue  # this model was the baseline of that evaluation
        metrics_file = metrics_path(evaluation)
        if metrics_file.is_file():
            report = json.loads(metrics_file.read_text())
            info.eval_metrics = dict(report.get("overall", {}).get("candidate") or {})
            info.eval_slices = {
                k: dict(v.get("candidate") or {}) for k, v in (report.get("slices") or {}).items()
            }
            info.task = report.get("task")
            info.eval_split = report.get("split") or "eval"
        break
    if examples is not None:
        split = examples.split_dir(info.eval_split)
        if split.is_dir():
            info.eval_examples = str(split / "*.tfrecord*")
        train = examples.split_dir("train")
        if train.is_dir():
            info.train_examples = str(train / "*.tfrecord*")
