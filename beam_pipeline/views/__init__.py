"""HTML views shared by the notebook display, `beam-pipeline report` and the web UI.

`render(artifact)` gives any artifact's view (a fragment); `beam_pipeline.views.runs` draws runs,
DAGs, lineage and model versions from ML Metadata; `beam_pipeline.views.report` assembles them
into one offline page. No TensorFlow is imported here.
"""

from __future__ import annotations

from beam_pipeline.views.artifacts import CSS, page, render, statistics_page

__all__ = ["CSS", "page", "render", "statistics_page"]
