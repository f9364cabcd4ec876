"""Every config section beyond ``pipeline``, ``metadata`` and ``beam``, by its YAML name.

The stages' sections and the services' (``serving``, ``monitor``) are collected here, so that
`beam_pipeline.config` (core) never imports the parts above it: callers pass `all_sections()` to
`config.load`, which falls back to it only when none are given.
"""

from __future__ import annotations


def all_sections() -> dict[str, type]:
    """Section name -> its frozen dataclass."""
    from beam_pipeline.monitoring.config import MonitorSection
    from beam_pipeline.serving.section import ServingSection
    from beam_pipeline.stages import SECTIONS

    return {**SECTIONS, "serving": ServingSection, "monitor": MonitorSection}
