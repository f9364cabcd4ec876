"""A Beam-native ML pipeline platform: ingest, validate, transform, train, evaluate, push.

``import beam_pipeline as bp`` is light (no TensorFlow): `load` returns a `Pipeline` whose
``run``/``run_stage`` drive the same orchestrator and metadata store as the CLI (see
`beam_pipeline.api`).
"""

import os
from typing import Any

# tf.Transform, keras-tuner and our training code must agree on one Keras: tf_keras (Keras 2).
# This must be set before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _quiet() -> None:
    # TensorFlow's C++ start-up log and the stack's notices stay out of notebooks and the console
    # (BEAM_PIPELINE_VERBOSE=1, or the CLI's -v, shows them); before TensorFlow loads.
    from beam_pipeline import progress

    progress.quiet_stack(progress.verbose_requested())


_quiet()


def _wire_sections() -> None:
    # core.config loads whatever sections it is given; the full set (the stages', serving's, the
    # monitor's) lives above core, so the composition root names it as the default.
    from beam_pipeline.core import config
    from beam_pipeline.sections import all_sections

    config.default_sections = all_sections


_wire_sections()

__version__ = "0.1.0"

_API = ("Artifact", "Pipeline", "Run", "load", "show", "write_report")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """The public API, imported on first use so that ``import beam_pipeline`` stays light."""
    if name in _API:
        from beam_pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'beam_pipeline' has no attribute {name!r}")
