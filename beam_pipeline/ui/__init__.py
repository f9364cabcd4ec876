"""`beam-pipeline ui`: a web UI over a pipeline's ML Metadata store (starlette + uvicorn).

Pages: runs (metrics and params as columns, sort, filter, paging; a notebook's stage-runs as one
row), a run (params, metrics, the model it produced, its DAG), artifacts (the views of
`beam_pipeline.views`, as in the notebook and the report), model versions and their evaluation,
versions side by side, monitoring reports over time, lineage graphs, and approve/reject (with
``--allow-review`` only), recorded by `registry.record_review` exactly as
``beam-pipeline approve|reject`` records it. Pages poll ``/api/state`` and reload when the store
changes (a run going on). Every asset is served from this process; no page loads anything from
the internet. Binds to 127.0.0.1 by default.
"""

from beam_pipeline.ui.app import create_app, serve

__all__ = ["create_app", "serve"]
