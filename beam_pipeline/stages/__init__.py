"""The stage registry: every stage of the training pipeline.

The orchestrator derives the DAG from each stage's declared inputs. A later stage plugs in by
adding its module here (and its config section to `beam_pipeline.sections`).

``STAGES`` is built on first access, not at import: importing a stage module imports Beam,
TensorFlow or TFDV, which only ``run`` and the workers need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from beam_pipeline.core.stage_sections import STAGE_ORDER

if TYPE_CHECKING:
    from beam_pipeline.core.stage import Stage

_MODULES = list(STAGE_ORDER)
_loaded: dict[str, Stage] = {}


def load_stages() -> dict[str, Stage]:
    """Stage name -> `Stage`, importing every stage module (heavy: Beam, TensorFlow, TFDV)."""
    if not _loaded:
        for name in _MODULES:
            stage: Stage = importlib.import_module(f"beam_pipeline.stages.{name}").STAGE
            _loaded[stage.name] = stage
    return dict(_loaded)


def __getattr__(name: str) -> Any:
    if name == "STAGES":
        return load_stages()
    if name == "SECTIONS":
        return {s.section_name: s.section for s in load_stages().values()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
