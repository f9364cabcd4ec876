"""HTML views shared by the notebook display, `beam-pipeline report` and the web UI.

`render(artifact)` gives any artifact's view (a fragment); `runs` draws a run, DAGs, lineage and
model versions from ML Metadata, `runlist` the runs list, `evaluation` an evaluation (metrics,
plots, slices), `statistics` every split's statistics, `compare` versions side by side,
`monitoring` the MonitoringReports, `graph` lays graphs out (Graphviz's dot), `svg` draws charts;
`report` assembles them into one offline page. No TensorFlow is imported here, no script is
emitted.
"""

from __future__ import annotations

from beam_pipeline.views.artifacts import CSS, page, render, statistics_page

__all__ = ["CSS", "page", "render", "statistics_page"]
