"""The one dead-letter sink: rejected rows of ingest, score and monitor, and their counters.

A rejected row is one JSON object per line (file, line, reason, raw: `readers.Rejected`),
written under the output's ``rejected/`` folder (`core.artifacts.rejected_dir`) as
``rejected-SSSSS-of-NNNNN.jsonl``; the folder exists even when nothing was rejected.
"""

from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from beam_pipeline.core.artifacts import Artifact, rejected_dir, rejected_prefix
from beam_pipeline.io import filesystem


class WriteDeadLetters(beam.PTransform):
    """JSON lines of rejected rows -> ``{output}/rejected/rejected-*.jsonl``."""

    def __init__(self, output: Artifact | str | os.PathLike[str]) -> None:
        super().__init__()
        self._output = output

    def expand(self, lines: beam.PCollection) -> Any:
        filesystem.makedirs(rejected_dir(self._output))  # there even when nothing is rejected
        return lines | beam.io.WriteToText(rejected_prefix(self._output), file_name_suffix=".jsonl")


def counters(result: Any, namespace: str) -> dict[str, int]:
    """A finished pipeline's counters of one namespace (``rejected`` among them), by name."""
    return {
        c.key.metric.name: int(c.committed or c.attempted or 0)
        for c in result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    }
