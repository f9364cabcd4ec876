"""The transform stage: tf.Transform on Beam with the user's ``preprocessing_fn``.

Analyzers run over the train split only; the resulting transform graph is applied to every split.
Input is read as Arrow record batches (tfx_bsl ``TFExampleRecord`` typed by the Schema) and the
transformed record batches are encoded back to tf.Example in batches, so no step is per-row Python.

Outputs:
    transform_graph (TransformGraph): the tf.Transform output directory (``transform_fn/``,
        ``transformed_metadata/schema.pbtxt``: the transformed schema, ``metadata/schema.pbtxt``:
        the raw schema). Properties: ``module``,
        ``raw_label_keys`` (the transform module's ``RAW_LABEL_KEYS``), ``features``.
    transformed_examples (Examples): ``Split-{split}/data-*.tfrecord.gz`` with ``shards`` files per
        split, plus ``schema.pbtxt`` (the transformed schema). Properties: ``splits``,
        ``row_counts``, ``columns``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics, MetricsFilter

from beam_pipeline.core.artifacts import (
    SCHEMA_FILE,
    Artifact,
    examples_pattern,
    load_schema,
    split_dir,
)
from beam_pipeline.core.errors import DataError, StageFailed
from beam_pipeline.core.stage import Prepared, Stage, StageContext
from beam_pipeline.core.stage_sections import TransformSection
from beam_pipeline.core.user_modules import load_module, module_hash, require
from beam_pipeline.io import filesystem
from beam_pipeline.io.tfrecord import WriteTFRecordBatches

log = logging.getLogger(__name__)

COUNTER_NAMESPACE = "beam_pipeline.transform"
MODULE_KEY = "transform.module"


# ---------------------------------------------------------------------------------------------
# Plain functions (no runner needed)


def load_preprocessing_fn(module_file: str | None) -> tuple[Callable[..., Any], list[str]]:
    """The user's ``preprocessing_fn`` and ``RAW_LABEL_KEYS`` (ConfigError naming the file)."""
    module = load_module(module_file, MODULE_KEY)
    fn = require(module, "preprocessing_fn", MODULE_KEY)
    raw_label_keys = list(getattr(module, "RAW_LABEL_KEYS", ()))
    return _guarded(fn, str(module.__file__)), raw_label_keys


class PreprocessingFnError(Exception):
    """The user's preprocessing_fn raised while tf.Transform traced it."""


def _guarded(fn: Callable[..., Any], file: str) -> Callable[..., Any]:
    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, Any]:
        try:
            outputs = fn(inputs)
        except Exception as exc:
            raise PreprocessingFnError(
                f"preprocessing_fn in {file} raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(outputs, dict) or not outputs:
            raise PreprocessingFnError(
                f"preprocessing_fn in {file}: expected a non-empty dict of tensors; "
                f"received {type(outputs).__name__}"
            )
        return outputs

    return preprocessing_fn


def column_kinds(feature_spec: dict[str, Any]) -> dict[str, str]:
    """Transformed feature -> "int" | "float" | "string" (the Examples ``columns`` property)."""
    import tensorflow as tf

    kinds = {tf.int64: "int", tf.float32: "float", tf.string: "string"}
    return {name: kinds.get(spec.dtype, spec.dtype.name) for name, spec in feature_spec.items()}


# ---------------------------------------------------------------------------------------------
# Beam


class _EncodeExamples(beam.DoFn):
    """(RecordBatch, passthrough) -> the batch's serialized tf.Examples framed as TFRecords, one
    Beam element per batch (ingest's framing, `beam_pipeline.io.tfrecord.frame`)."""

    def __init__(self, split: str) -> None:
        self._split = split
        self._rows = Metrics.counter(COUNTER_NAMESPACE, f"rows[{split}]")
        self._encoder: Any = None

    def setup(self) -> None:
        from tfx_bsl.coders import example_coder

        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def process(self, element: tuple[Any, Any]) -> Iterator[bytes]:
        from beam_pipeline.io.tfrecord import frame

        record_batch = element[0]
        if record_batch.num_rows:
            self._rows.inc(record_batch.num_rows)
            yield frame(self._encoder.encode(record_batch))


class _DropUnlabeled(beam.DoFn):
    """Raw record batches -> the rows whose label columns hold a value; counts both."""

    def __init__(self, split: str, keys: list[str]) -> None:
        self._keys = keys
        self._seen = Metrics.counter(COUNTER_NAMESPACE, f"raw[{split}]")
        self._dropped = Metrics.counter(COUNTER_NAMESPACE, f"unlabeled[{split}]")

    def process(self, batch: Any) -> Iterator[Any]:
        from beam_pipeline.core.labels import labeled

        self._seen.inc(batch.num_rows)
        mask = labeled(batch, self._keys)
        kept = int(mask.sum())
        if kept < batch.num_rows:
            self._dropped.inc(batch.num_rows - kept)
            batch = batch.filter(mask)
        if kept:
            yield batch


class WriteTransformedExamples(beam.PTransform):
    """Transformed record batches -> ``{folder}/data-NNNNN-of-NNNNN.tfrecord.gz``, a batch of
    framed records per element, as ingest writes them (no Beam element per record)."""

    def __init__(self, folder: str, split: str, shards: int) -> None:
        super().__init__()
        self._folder, self._split, self._shards = folder, split, shards

    def expand(self, batches: beam.PCollection) -> beam.pvalue.PDone:
        return (
            batches
            | "Encode" >> beam.ParDo(_EncodeExamples(self._split))
            | "Write" >> WriteTFRecordBatches(f"{self._folder}/data", self._shards)
        )


class TransformExamples(beam.PTransform):
    """Analyze the train split, transform every split, write the graph and the examples."""

    def __init__(
        self,
        preprocessing_fn: Callable[..., Any],
        sources: dict[str, Any],
        graph_dir: str,
        output_dirs: dict[str, str],
        shards: int,
        label_keys: list[str] | None = None,
    ) -> None:
        super().__init__()
        self._fn, self._sources = preprocessing_fn, sources
        self._label_keys = list(label_keys or [])
        self._graph_dir, self._output_dirs, self._shards = graph_dir, output_dirs, shards

    def expand(self, pipeline: beam.Pipeline) -> beam.pvalue.PDone:
        import tensorflow_transform.beam as tft_beam

        train = self._sources["train"]
        raw = self._labeled(pipeline | "Read[train]" >> train.BeamSource(), "train")
        (transformed_train, _), transform_fn = (
            raw,
            train.TensorAdapterConfig(),
        ) | "AnalyzeAndTransform[train]" >> tft_beam.AnalyzeAndTransformDataset(
            self._fn, output_record_batches=True
        )
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self._graph_dir)
        for split, source in self._sources.items():
            if split == "train":
                transformed = transformed_train
            else:
                raw = self._labeled(pipeline | f"Read[{split}]" >> source.BeamSource(), split)
                transformed, _ = (
                    (raw, source.TensorAdapterConfig()),
                    transform_fn,
                ) | f"Transform[{split}]" >> tft_beam.TransformDataset(output_record_batches=True)
            _ = transformed | f"Write[{split}]" >> WriteTransformedExamples(
                self._output_dirs[split], split, self._shards
            )
        return beam.pvalue.PDone(pipeline)

    def _labeled(self, raw: beam.PCollection, split: str) -> beam.PCollection:
        if not self._label_keys:
            return raw
        return raw | f"DropUnlabeled[{split}]" >> beam.ParDo(
            _DropUnlabeled(split, self._label_keys)
        )


# ---------------------------------------------------------------------------------------------
# The stage


def prepare(section: TransformSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    load_preprocessing_fn(section.module)  # fail early (exit 2) on a missing file or function
    return Prepared(key={"module_hash": module_hash(section.module, MODULE_KEY)})


def run(
    section: TransformSection, inputs: dict[str, Artifact], ctx: StageContext
) -> dict[str, Artifact]:
    """tf.Transform over every split. Returns {"transform_graph", "transformed_examples"}."""
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.public import tfxio

    t0 = time.time()
    examples = inputs["examples"]
    splits = examples.splits or ["train", "eval"]
    if "train" not in splits:
        raise DataError(f"examples {examples.uri} have no train split; received splits {splits}")
    preprocessing_fn, raw_label_keys = load_preprocessing_fn(section.module)
    schema = load_schema(inputs["schema"])

    graph = ctx.output("transform_graph", "TransformGraph")
    transformed = ctx.output("transformed_examples", "Examples")
    output_dirs = {s: str(split_dir(transformed.path, s)) for s in splits}
    sources = {
        s: tfxio.TFExampleRecord(
            examples_pattern(examples, s),
            schema=schema,
            telemetry_descriptors=["beam_pipeline", "transform"],
        )
        for s in splits
    }
    options = ctx.beam_options()
    temp_location = options.view_as(GoogleCloudOptions).temp_location
    temp_dir = temp_location or str(ctx.output_dir / "_tft_tmp")

    unlabeled = _unlabeled_everywhere(sources, raw_label_keys, ctx)
    pipeline = beam.Pipeline(options=options)
    try:
        with tft_beam.Context(temp_dir=temp_dir):
            _ = pipeline | "TransformExamples" >> TransformExamples(
                preprocessing_fn, sources, graph.uri, output_dirs, section.shards, raw_label_keys
            )
    except PreprocessingFnError as exc:
        raise StageFailed(ctx.stage, str(exc)) from exc.__cause__
    result = pipeline.run()
    result.wait_until_finish()
    unlabeled = _counts(result, splits, "unlabeled") if raw_label_keys else unlabeled
    if not temp_location:
        filesystem.rmtree(temp_dir)

    counts = _row_counts(result, splits)
    # The raw schema travels with the graph: the exported model parses raw inputs by it.
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema),
        str(graph.path / tft.TFTransformOutput.RAW_METADATA_DIR),
    )
    output = tft.TFTransformOutput(graph.uri)
    spec = output.transformed_feature_spec()
    metadata_dir = graph.path / tft.TFTransformOutput.TRANSFORMED_METADATA_DIR
    filesystem.copy_file(metadata_dir / SCHEMA_FILE, transformed.path / SCHEMA_FILE)
    graph.properties.update(
        module=str(section.module), raw_label_keys=raw_label_keys, features=sorted(spec)
    )
    transformed.properties.update(
        splits=splits, row_counts=counts, columns=column_kinds(spec), unlabeled=unlabeled
    )
    if any(unlabeled.values()):
        log.warning(
            "transform: rows without a label %s dropped (never filled): %s",
            raw_label_keys,
            ", ".join(f"{s} {n:,}" for s, n in unlabeled.items()),
        )
    log.info(
        "transform: %s → %d features, %.1f s",
        " / ".join(f"{s} {counts.get(s, 0):,}" for s in splits),
        len(spec),
        time.time() - t0,
    )
    return {"transform_graph": graph, "transformed_examples": transformed}


def _unlabeled_everywhere(
    sources: dict[str, Any], label_keys: list[str], ctx: StageContext
) -> dict[str, int]:
    """Before tf.Transform: a split with rows but no labeled row is a stage error (a label is
    never filled, whatever the gate says). Reads only the label columns. {split: 0} when fine."""
    from beam_pipeline.core.labels import labeled, no_label_message

    if not label_keys:
        return {s: 0 for s in sources}
    from tfx_bsl.public import tfxio as _tfxio

    for split, source in sources.items():
        names = set(source.ArrowSchema().names)
        if not set(label_keys) <= names:  # a column no row ever had is not in the schema
            raise DataError(no_label_message(ctx.stage, split, label_keys, 0))
        projected = source.Project(list(label_keys))
        rows = 0
        options = _tfxio.RecordBatchesOptions(batch_size=65536, num_epochs=1, shuffle=False)
        for batch in projected.RecordBatches(options):
            rows += batch.num_rows
            if labeled(batch, label_keys).any():
                break
        else:
            if rows:
                raise DataError(no_label_message(ctx.stage, split, label_keys, rows))
    return {s: 0 for s in sources}


def _counts(result: Any, splits: list[str], kind: str) -> dict[str, int]:
    counters = result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))["counters"]
    counts = {s: 0 for s in splits}
    for c in counters:
        name = c.key.metric.name
        if name.startswith(f"{kind}[") and name[len(kind) + 1 : -1] in counts:
            value = c.committed if c.committed is not None else c.attempted
            counts[name[len(kind) + 1 : -1]] += int(value or 0)
    return counts


def _row_counts(result: Any, splits: list[str]) -> dict[str, int]:
    counters = result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))["counters"]
    counts = {s: 0 for s in splits}
    for c in counters:
        name = c.key.metric.name
        split = name[len("rows[") : -1]
        if split in counts:
            value = c.committed if c.committed is not None else c.attempted
            counts[split] += int(value or 0)
    return counts


STAGE = Stage(
    name="transform",
    section=TransformSection,
    run=run,
    prepare=prepare,
    inputs={
        "examples": "ingest.examples",
        "schema": "schema.schema",
    },
    after=frozenset({"validate"}),  # the validation gate decides first; its output is not read
    outputs={"transform_graph": "TransformGraph", "transformed_examples": "Examples"},
    cache_exempt=frozenset({"module"}),  # keyed by the module's source instead
)
