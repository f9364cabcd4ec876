"""The stage registry: every stage of the training pipeline, in no particular order.

The orchestrator derives the DAG from each stage's declared inputs. A later stage plugs in by
adding its module here.
"""

from __future__ import annotations

import contextlib
import importlib
import io

from beam_pipeline.stage import Stage

_MODULES = [
    "ingest",
    "statistics",
    "schema",
    "validate",
    "transform",
    "tune",
    "train",
    "evaluate",
    "push",
]


def _load() -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    for name in _MODULES:
        # TFDV writes an "IPython is not installed" notice to stderr when first imported; its
        # notebook views are not used here, so the notice is only noise for a CLI user.
        with contextlib.redirect_stderr(io.StringIO()):
            module = importlib.import_module(f"beam_pipeline.stages.{name}")
        stage: Stage = module.STAGE
        stages[stage.name] = stage
    return stages


STAGES: dict[str, Stage] = _load()
SECTIONS: dict[str, type] = {s.section_name: s.section for s in STAGES.values()}
