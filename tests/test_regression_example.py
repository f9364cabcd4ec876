"""The bundled regression example (configs/penguins_mass.yaml) runs end to end, cheaply: lower
is better for its monitor and thresholds, and its quality is what the README says."""

from __future__ import annotations

import json

import pytest

from tests import pipeline_fixtures as pf

pytestmark = pytest.mark.slow  # a whole (small) pipeline: ingest → evaluate


def test_regression_example_trains_and_is_blessed_on_rmse() -> None:
    # The config's own settings but 25 epochs (the README's figure is from its 60), through push;
    # the run is shared with the serving tests (tests/serving/test_inference.py).
    out = pf.penguins_run("penguins_mass")["summary"]
    assert out["status"] == "completed"
    assert out["blessed"] is True, json.dumps(out)[-2000:]
    # README: eval RMSE about 0.08 and MAE about 0.065 (body mass scaled to [0, 1]); the label's
    # own spread (its standard deviation) is about 0.22, so the model explains most of it.
    assert out["metrics"]["rmse"] < 0.12 and out["metrics"]["mae"] < 0.1, out["metrics"]
