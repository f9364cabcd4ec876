"""`beam-pipeline ui`: a web UI over a pipeline's ML Metadata store (starlette + uvicorn).

Pages: runs (status, stages, timings, errors), a run's DAG (cached and failed stages marked),
artifacts (the views of `beam_pipeline.views`, as in the notebook and the report), model versions
side by side, a model's lineage graph, and approve/reject (with ``--allow-review`` only), recorded
by `registry.record_review` exactly as ``beam-pipeline approve|reject`` records it. Pages poll
``/api/state`` and reload when the store changes (a run going on). Every asset is served from
this process; no page loads anything from the internet. Binds to 127.0.0.1 by default.
"""

from beam_pipeline.ui.app import create_app, serve

__all__ = ["create_app", "serve"]
