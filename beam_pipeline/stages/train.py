"""The train stage: tf_keras under a tf.distribute strategy, exported with the transform inside.

Input is the transformed TFRecords read by tf.data (`modeling.make_dataset`). The model is built
inside the strategy's scope from the model module and the hyperparameters artifact
(``train.hyperparameters`` override single values). Training repeats the train split for
``epochs`` × ``steps_per_epoch`` batches with early stopping on ``early_stopping_monitor`` (best
weights restored), a checkpoint per epoch and TensorBoard logs.

Strategies: ``default``; ``mirrored`` over the visible devices; ``multi_worker`` from
``TF_CONFIG``. Under ``multi_worker`` every worker runs the same training: the chief (task
``chief``, or ``worker`` 0 when there is none) runs ``beam-pipeline run CONFIG --only train`` and
writes the artifacts; every other worker runs `run_worker` (``beam-pipeline train-worker CONFIG``)
and writes only to a temporary folder. TensorFlow needs the strategy before any other TF work in
the process, so a multi-worker train runs in a process of its own (``--only train``).

The exported SavedModel has two signatures, both applying the transform graph inside:
    serving_default: ``examples``: a [batch] string tensor of serialized tf.Example (raw features).
    serving_raw: one [batch] string tensor per raw column (the transform module's
        ``RAW_LABEL_KEYS`` excluded), each value written as in the CSV: "12.45", "Cash", and ""
        for a missing value.
    Both return ``predictions``: the model's output ([batch, 1] probability for a binary model,
    [batch, classes] probabilities for a multi-class one).

Outputs:
    model (Model): ``saved_model/``. Properties: ``metrics`` (eval-split metrics: ``loss`` and
        whatever the model compiles, e.g. ``auc``, ``accuracy``), ``label_key``,
        ``hyperparameters``, ``signatures``, ``raw_features``.
    model_run (ModelRun): ``logs/`` (TensorBoard: train/ and validation/), ``checkpoints/``,
        ``history.json`` (per-epoch metrics).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beam_pipeline import progress
from beam_pipeline.core.artifacts import Artifact, saved_model_dir
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.core.stage import Prepared, Stage, StageContext
from beam_pipeline.core.stage_sections import TrainSection
from beam_pipeline.evaluation.direction import metric_direction
from beam_pipeline.io import filesystem
from beam_pipeline.io.raw_inputs import RawSchema, always_present
from beam_pipeline.training import modeling

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Strategy and cluster


def make_strategy(name: str) -> Any:
    """The tf.distribute strategy named by ``train.strategy``."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("train.strategy: multi_worker needs TF_CONFIG in the environment")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind is None or kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in config.get("cluster", {})


def num_workers() -> int:
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


# ---------------------------------------------------------------------------------------------
# Training (also run by workers)


@dataclass(frozen=True)
class TrainInputs:
    transform_graph: str
    transformed_examples: str
    row_counts: dict[str, int]
    raw_label_keys: list[str]
    hyperparameters: dict[str, Any]


def train_model(
    section: TrainSection, job: TrainInputs, model_dir: Path, run_dir: Path
) -> dict[str, Any]:
    """Trains, evaluates and exports; returns the Model properties.

    Non-chief workers write to a temporary folder that is removed afterwards.
    """
    strategy = make_strategy(section.strategy)  # before any other TF work in this process
    modeling.exempt_libraries_from_autograph()
    import tensorflow_transform as tft
    import tf_keras

    chief = is_chief()
    scratch = None
    if not chief:
        scratch = Path(tempfile.mkdtemp(prefix="train-worker-"))
        model_dir, run_dir = scratch / "model", scratch / "run"
    try:
        tf_keras.utils.set_random_seed(section.seed)
        module = modeling.load_model_module(section.module)
        tft_output = tft.TFTransformOutput(job.transform_graph)
        module.check_label(tft_output)
        hp = modeling.hyperparameters(job.hyperparameters, section.hyperparameters)
        with strategy.scope():
            model = module.build(hp, tft_output)
        keys = list(model.input_names)
        workers = num_workers()
        train_ds, eval_ds = modeling.train_eval_datasets(
            job.transformed_examples,
            tft_output,
            module.label_key,
            section.batch_size,
            eval_steps=section.eval_steps,
            feature_keys=keys,
            num_workers=workers,
            shuffle_buffer=section.shuffle_buffer,
            seed=section.seed,
            cache=section.cache,
        )
        steps = section.steps_per_epoch or modeling.steps_for(
            int(job.row_counts.get("train", 0)) or section.batch_size, section.batch_size
        )
        callbacks = _callbacks(section, run_dir, tf_keras)
        t0 = time.time()
        history = model.fit(
            train_ds,
            validation_data=eval_ds,
            epochs=section.epochs,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=0,
        )
        train_seconds = time.time() - t0
        monitor = section.early_stopping_monitor
        if section.early_stopping_patience and monitor not in history.history:
            raise ConfigError(
                f"train.early_stopping_monitor: the model does not log {monitor!r}; it logs "
                f"{sorted(history.history)}"
            )
        metrics = {
            k: float(v) for k, v in model.evaluate(eval_ds, return_dict=True, verbose=0).items()
        }
        history_text = json.dumps(history.history, indent=1, default=float)
        filesystem.write_text(run_dir / "history.json", history_text)
        signatures = export_signatures(model, tft_output, job.raw_label_keys)
        model.save(
            str(saved_model_dir(model_dir)),
            include_optimizer=False,
            signatures=signatures,
            save_format="tf",
            # The two signatures are the model's interface (TF Serving, score, serve, evaluate);
            # per-layer call traces would only serve tf_keras.models.load_model and cost ~6 s.
            save_traces=False,
        )
        raw_schema = RawSchema.from_feature_spec(
            _raw_spec(tft_output, job.raw_label_keys),
            always_present=always_present(tft_output.raw_metadata.schema),
        )
        raw_schema.save(saved_model_dir(model_dir))  # what check_rows needs, beside the model
        return {
            "metrics": metrics,
            "label_key": module.label_key,
            "hyperparameters": dict(hp.values),
            "signatures": sorted(signatures),
            "raw_features": sorted(_raw_spec(tft_output, job.raw_label_keys)),
            "epochs": len(history.epoch),
            "steps_per_epoch": steps,
            "train_seconds": round(train_seconds, 2),
            "strategy": section.strategy,
            "replicas": int(strategy.num_replicas_in_sync),
        }
    finally:
        if scratch is not None:
            filesystem.rmtree(scratch)


def _callbacks(section: TrainSection, run_dir: Path, tf_keras: Any) -> list[Any]:
    filesystem.makedirs(run_dir)
    callbacks = [
        tf_keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs")),
        tf_keras.callbacks.ModelCheckpoint(
            str(run_dir / "checkpoints" / "epoch-{epoch:03d}"), save_weights_only=True
        ),
        progress.keras_callback("train", section.epochs),
    ]
    if section.early_stopping_patience:
        direction = metric_direction(
            section.early_stopping_monitor,
            section.early_stopping_direction,
            "train.early_stopping_monitor",
        )
        callbacks.append(
            tf_keras.callbacks.EarlyStopping(
                monitor=section.early_stopping_monitor,
                mode=direction,
                patience=section.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    return callbacks


# ---------------------------------------------------------------------------------------------
# Export


def _raw_spec(tft_output: Any, raw_label_keys: list[str]) -> dict[str, Any]:
    return {k: v for k, v in tft_output.raw_feature_spec().items() if k not in raw_label_keys}


def export_signatures(model: Any, tft_output: Any, raw_label_keys: list[str]) -> dict[str, Any]:
    """``serving_default`` (serialized tf.Example) and ``serving_raw`` (CSV-like strings)."""
    import tensorflow as tf

    model.tft_layer = tft_output.transform_features_layer()  # tracked, so saved with the model
    raw_spec = _raw_spec(tft_output, raw_label_keys)
    keys = list(model.input_names)

    def predict(raw: dict[str, Any]) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer(raw)
        return {"predictions": model({k: transformed[k] for k in keys})}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(tf.io.parse_example(examples, raw_spec))

    @tf.function(
        input_signature=[{k: tf.TensorSpec([None], tf.string, name=k) for k in sorted(raw_spec)}]
    )
    def serve_raw(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return predict({k: parse_raw(features[k], spec, k) for k, spec in raw_spec.items()})

    return {
        "serving_default": serve_examples.get_concrete_function(),
        "serving_raw": serve_raw.get_concrete_function(),
    }


def parse_raw(text: Any, spec: Any, name: str = "") -> Any:
    """CSV-like strings ("" = missing) -> the tensor tf.io.parse_example gives for ``spec``.

    As parse_example does, a missing value in a fixed-length feature without a default (a column
    the schema says is always present) is an error, and an int column takes integers only.
    """
    import tensorflow as tf

    def convert(values: tf.Tensor) -> tf.Tensor:
        if spec.dtype == tf.string:
            return values
        if spec.dtype.is_integer:
            return tf.cast(tf.strings.to_number(values, tf.int64), spec.dtype)
        return tf.cast(tf.strings.to_number(values, tf.float64), spec.dtype)

    present = tf.strings.length(tf.strings.strip(text)) > 0
    if isinstance(spec, tf.io.FixedLenFeature):
        default = spec.default_value
        if default is None:
            tf.debugging.assert_equal(
                tf.reduce_all(present),
                True,
                message=f"Feature: {name} is required but could not be found.",
            )
            default = "" if spec.dtype == tf.string else 0
        default = tf.reshape(tf.constant(default, dtype=spec.dtype), [])
        safe = tf.where(present, text, tf.zeros_like(text) if spec.dtype == tf.string else "0")
        value = tf.where(present, convert(safe), default)
        return tf.reshape(value, [-1, *spec.shape])
    indices = tf.where(present)
    values = convert(tf.boolean_mask(text, present))
    return tf.SparseTensor(
        tf.concat([indices, tf.zeros_like(indices)], axis=1),
        values,
        tf.stack([tf.shape(text, out_type=tf.int64)[0], tf.constant(1, tf.int64)]),
    )


# ---------------------------------------------------------------------------------------------
# The stage


def prepare(section: TrainSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    modeling.load_model_module(section.module)
    return Prepared(key={"module_hash": modeling.model_module_hash(section.module)})


def run(
    section: TrainSection, inputs: dict[str, Artifact], ctx: StageContext
) -> dict[str, Artifact]:
    """Train and export. Returns {"model": Model, "model_run": ModelRun}."""
    t0 = time.time()
    model = ctx.output("model", "Model")
    model_run = ctx.output("model_run", "ModelRun")
    properties = train_model(section, _job(inputs), model.path, model_run.path)
    model.properties.update(properties)
    model_run.properties.update(
        metrics=properties["metrics"],
        epochs=properties["epochs"],
        train_seconds=properties["train_seconds"],
    )
    log.info(
        "train: %d epochs × %d steps (%s, %d replicas), eval %s, %.1f s",
        properties["epochs"],
        properties["steps_per_epoch"],
        section.strategy,
        properties["replicas"],
        ", ".join(f"{k} {v:.4f}" for k, v in properties["metrics"].items()),
        time.time() - t0,
    )
    return {"model": model, "model_run": model_run}


def _job(inputs: dict[str, Artifact]) -> TrainInputs:
    graph, examples = inputs["transform_graph"], inputs["transformed_examples"]
    values = modeling.read_hyperparameters(inputs["hyperparameters"])
    return TrainInputs(
        transform_graph=graph.uri,
        transformed_examples=examples.uri,
        row_counts=dict(examples.properties.get("row_counts", {})),
        raw_label_keys=list(graph.properties.get("raw_label_keys", [])),
        hyperparameters=values,
    )


def run_worker(config_file: str, overrides: list[str] | None = None) -> None:
    """A non-chief multi-worker training process (``TF_CONFIG`` set) for ``beam-pipeline``.

    Trains on the outputs of the latest completed transform and tune executions in the config's
    metadata store, in step with the chief; writes nothing that lasts.
    """
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store

    config = load(config_file, overrides)
    section: TrainSection = config.section("train")
    if section.strategy != "multi_worker" or is_chief():
        raise ConfigError(
            "train worker: expected train.strategy multi_worker and TF_CONFIG naming a "
            f"non-chief task; received strategy {section.strategy!r}"
        )
    store = Store(config)
    try:
        inputs = {
            **store.latest_outputs("transform", required=True),
            **store.latest_outputs("tune", required=True),
        }
    finally:
        store.close()
    scratch = Path(tempfile.mkdtemp(prefix="train-worker-"))
    try:
        train_model(section, _job(inputs), scratch / "model", scratch / "run")
    finally:
        filesystem.rmtree(scratch)


STAGE = Stage(
    name="train",
    section=TrainSection,
    run=run,
    prepare=prepare,
    inputs={
        "transform_graph": "transform.transform_graph",
        "transformed_examples": "transform.transformed_examples",
        "hyperparameters": "tune.hyperparameters",
        "schema": "schema.schema",  # lineage: the Model links to its schema
        "examples": "ingest.examples",  # lineage: and to the raw Examples
    },
    outputs={"model": "Model", "model_run": "ModelRun"},
    cache_exempt=frozenset({"module"}),  # keyed by the module's source instead
)
