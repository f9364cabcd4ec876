"""The statistics stage: TFDV statistics of every split of an Examples artifact, in one Beam job.

Reads ``Split-{split}/data-*.tfrecord.gz`` as Arrow record batches (tfx_bsl's TFExampleRecord),
computes statistics with ``tfdv.GenerateStatistics`` and writes ``Split-{split}/FeatureStats.pb``
(a binary ``DatasetFeatureStatisticsList``) and, when asked, ``Split-{split}/statistics.html``:
the same view as the notebook, the report and the UI (`beam_pipeline.views`), self-contained
(inline SVG histograms, no scripts), so it opens offline. TFDV's Facets view is not written: it
loads its code from the web.
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx_bsl.public import tfxio

from beam_pipeline import views
from beam_pipeline.core.artifacts import (
    EXAMPLES_GLOB,
    Artifact,
    load_statistics,
    split_dir,
    stats_path,
)
from beam_pipeline.core.errors import DataError
from beam_pipeline.core.stage import Stage, StageContext
from beam_pipeline.core.stage_sections import StatisticsSection
from beam_pipeline.io import filesystem

log = logging.getLogger(__name__)

HTML_FILE = "statistics.html"  # self-contained: opens offline
BATCH_SIZE = 1000


def stats_options(section: StatisticsSection) -> tfdv.StatsOptions:
    """The TFDV options for a section (no sampling at rate 1)."""
    rate = section.sample_rate if section.sample_rate < 1 else None
    return tfdv.StatsOptions(sample_rate=rate)


class ComputeStatistics(beam.PTransform):
    """Reads one split's gzip TFRecords of tf.Example and writes its TFDV statistics."""

    def __init__(self, file_pattern: str, output_path: str, options: tfdv.StatsOptions) -> None:
        super().__init__()
        self._file_pattern = file_pattern
        self._output_path = output_path
        self._options = options

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.PDone:
        source = tfxio.TFExampleRecord(file_pattern=self._file_pattern)
        return (
            pbegin
            | "Read" >> source.BeamSource(batch_size=BATCH_SIZE)
            | "Generate" >> tfdv.GenerateStatistics(self._options)
            | "Write" >> tfdv.WriteStatisticsToBinaryFile(self._output_path)
        )


def num_examples(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    """Examples counted by the (unsliced) statistics of one split."""
    return int(stats.datasets[0].num_examples) if stats.datasets else 0


def run(
    section: StatisticsSection, inputs: dict[str, Artifact], ctx: StageContext
) -> dict[str, Artifact]:
    """Per-split statistics of the examples. Returns ``{"statistics": ExampleStatistics}``."""
    t0 = time.time()
    examples = inputs["examples"]
    splits = examples.splits
    if not splits:
        raise DataError(f"{examples.uri}: the Examples artifact names no splits")
    for split in splits:
        if not any(examples.split_dir(split).glob(EXAMPLES_GLOB)):
            raise DataError(
                f"{examples.split_dir(split)}: no {EXAMPLES_GLOB} files for split {split!r}"
            )
    out = ctx.output("statistics", "ExampleStatistics", splits=list(splits))
    options = stats_options(section)
    with beam.Pipeline(options=ctx.beam_options()) as pipeline:
        for split in splits:
            filesystem.makedirs(split_dir(out.path, split))
            _ = pipeline | f"Statistics[{split}]" >> ComputeStatistics(
                str(examples.split_dir(split) / EXAMPLES_GLOB), stats_path(out, split), options
            )

    counts: dict[str, int] = {}
    features = 0
    for split in splits:
        stats = load_statistics(out, split)
        counts[split] = num_examples(stats)
        features = max(features, len(stats.datasets[0].features) if stats.datasets else 0)
        if section.html:
            title = f"{ctx.config.pipeline.name}: {split} statistics"
            page = views.statistics_page(stats, title)
            filesystem.write_text(out.split_dir(split) / HTML_FILE, page)
    out.properties.update(num_examples=counts, num_features=features)
    if section.sample_rate < 1:
        out.properties["sample_rate"] = section.sample_rate
    log.info(
        "statistics: %s examples, %d features, %.1f s",
        " / ".join(f"{s} {n:,}" for s, n in counts.items()),
        features,
        time.time() - t0,
    )
    return {"statistics": out}


STAGE = Stage(
    name="statistics",
    deterministic=True,
    section=StatisticsSection,
    run=run,
    inputs={"examples": "ingest.examples"},
    outputs={"statistics": "ExampleStatistics"},
)
