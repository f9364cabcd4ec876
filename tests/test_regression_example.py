"""The bundled regression example (configs/penguins_mass.yaml) runs end to end, cheaply: lower
is better for its monitor and thresholds, and its quality is what the README says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow  # a whole (small) pipeline: ingest → evaluate


def test_regression_example_trains_and_is_blessed_on_rmse(tmp_path: Path, capsys) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "penguins_mass.yaml").read_text())
    cfg["pipeline"]["root"] = str(tmp_path / "root")
    cfg["ingest"]["source"] = str(REPO / "data" / "penguins" / "penguins_processed.csv")
    cfg["schema"]["path"] = str(REPO / "configs" / "penguins" / "schema.pbtxt")
    cfg["transform"]["module"] = str(REPO / "transforms" / "penguins_mass.py")
    cfg["train"]["module"] = str(REPO / "models" / "penguins_mass.py")
    cfg["train"]["epochs"] = 25  # cheap; the README's figure is from the config's 60
    path = tmp_path / "penguins_mass.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli(["run", str(path), "--to", "evaluate", "--json"], capsys)
    assert code == 0, err
    assert out["blessed"] is True, json.dumps(out)[-2000:]
    # README: eval RMSE about 0.08 and MAE about 0.065 (body mass scaled to [0, 1]); the label's
    # own spread (its standard deviation) is about 0.22, so the model explains most of it.
    assert out["metrics"]["rmse"] < 0.12 and out["metrics"]["mae"] < 0.1, out["metrics"]
