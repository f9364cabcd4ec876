"""Every config section beyond ``pipeline``, ``metadata`` and ``beam``, by its YAML name.

The stages' sections and the services' (``serving``, ``monitor``) are collected here, so that
`beam_pipeline.core.config` (core) never imports the parts above it: the package root makes
`all_sections` the default of `config.load` (``config.default_sections``); a caller may pass
its own.

This is the light seam: it imports section dataclasses only (`beam_pipeline.core.stage_sections`
and the like), never a stage implementation, so loading a config costs no Beam, TensorFlow or
TFDV import. A new section's dataclass must be importable the same way.
"""

from __future__ import annotations


def all_sections() -> dict[str, type]:
    """Section name -> its frozen dataclass."""
    from beam_pipeline.core import stage_sections as s
    from beam_pipeline.monitoring.config import MonitorSection
    from beam_pipeline.serving.section import ServingSection

    return {
        "ingest": s.IngestSection,
        "statistics": s.StatisticsSection,
        "schema": s.SchemaSection,
        "validation": s.ValidationSection,
        "transform": s.TransformSection,
        "tune": s.TuneSection,
        "train": s.TrainSection,
        "evaluate": s.EvaluateSection,
        "push": s.PushSection,
        "serving": ServingSection,
        "monitor": MonitorSection,
    }
