"""The stage registry: every stage of the training pipeline, in no particular order.

The orchestrator derives the DAG from each stage's declared inputs. A later stage plugs in by
adding its module here.
"""

from __future__ import annotations

import importlib

from beam_pipeline.stage import Stage

_MODULES = ["ingest", "statistics", "schema", "validate", "transform", "tune", "train"]


def _load() -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    for name in _MODULES:
        module = importlib.import_module(f"beam_pipeline.stages.{name}")
        stage: Stage = module.STAGE
        stages[stage.name] = stage
    return stages


STAGES: dict[str, Stage] = _load()
SECTIONS: dict[str, type] = {s.section_name: s.section for s in STAGES.values()}
