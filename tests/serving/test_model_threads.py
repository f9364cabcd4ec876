"""`serving.model_threads`: checked as a config value, and applied to TensorFlow's thread pools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from beam_pipeline.core.errors import ConfigError
from beam_pipeline.serving.section import ServingSection

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", [-1, 1.5, "two"])
def test_a_model_threads_value_that_is_not_a_count_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="serving.model_threads"):
        ServingSection(model_threads=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("threads", "expected"), [(1, 1), (3, 3), (0, 0)])
def test_model_threads_sets_tensorflows_pools(threads: int, expected: int) -> None:
    # A child process: the pools can only be set before TensorFlow's first op.
    code = (
        "import tensorflow as tf\n"
        "from beam_pipeline.serving.server import tensorflow_threads\n"
        f"tensorflow_threads({threads})\n"
        "print(tf.config.threading.get_inter_op_parallelism_threads(),"
        " tf.config.threading.get_intra_op_parallelism_threads())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(expected), str(expected)]  # 0: TensorFlow's own default
