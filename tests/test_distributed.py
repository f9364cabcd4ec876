"""Distribution proofs: multi-worker training and chief/worker tuning across local processes.

Every process runs under a timeout: one dead worker makes the others wait forever.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests import ml_fixtures

TIMEOUT = 300


def _transform_inputs(fixture: dict) -> dict:
    return {
        "transform_graph": fixture["transform_graph"].uri,
        "transformed_examples": fixture["transformed_examples"].uri,
        "row_counts": fixture["transformed_examples"].properties["row_counts"],
    }


@pytest.mark.slow
def test_multi_worker_training_across_two_processes(tmp_path: Path) -> None:
    taxi = ml_fixtures.transformed("taxi", 1500)
    ports = [ml_fixtures.free_port(), ml_fixtures.free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    section = {
        "module": str(ml_fixtures.ROOT / "models" / "taxi.py"),
        "strategy": "multi_worker",
        "epochs": 2,
        "steps_per_epoch": 10,
        "batch_size": 64,
    }
    inputs = {
        **_transform_inputs(taxi),
        "raw_label_keys": ["tips"],
        "hyperparameters": {"units": 32, "hidden_layers": 1},
    }
    procs = []
    for index in range(2):
        job = {
            "kind": "train",
            "section": section,
            "inputs": inputs,
            "out": str(tmp_path / f"worker{index}"),
        }
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        procs.append(ml_fixtures.run_job(job, {"TF_CONFIG": json.dumps(tf_config)}))
    codes = ml_fixtures.wait_all(procs, TIMEOUT)
    logs = [(tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2)]
    assert codes == [0, 0], logs

    chief = json.loads((tmp_path / "worker0" / "result.json").read_text())
    other = json.loads((tmp_path / "worker1" / "result.json").read_text())
    assert chief["replicas"] == other["replicas"] == 2  # one replica per process, in sync
    assert chief["metrics"]["auc"] > 0.6
    assert not (tmp_path / "worker1" / "model").exists()  # only the chief keeps a model
    predictions = ml_fixtures.check_model(
        tmp_path / "worker0" / "model" / "saved_model", ml_fixtures.TAXI_CSV, rows=20
    )
    np.testing.assert_allclose(predictions["raw"], predictions["examples"], atol=1e-6)


@pytest.mark.slow
def test_chief_and_two_workers_share_the_trials(tmp_path: Path) -> None:
    penguins = ml_fixtures.transformed("penguins")
    section = {
        "algorithm": "random",
        "max_trials": 4,
        "epochs": 1,
        "steps_per_epoch": 3,
        "objective": "val_accuracy",
        "early_stopping_patience": 0,
    }
    inputs = {
        "transform_graph": penguins["transform_graph"].uri,
        "transformed_examples": penguins["transformed_examples"].uri,
        "row_counts": penguins["transformed_examples"].properties["row_counts"],
        "module": str(ml_fixtures.ROOT / "models" / "penguins.py"),
        "fixed": {},
        "batch_size": 32,
    }
    port = ml_fixtures.free_port()
    procs = []
    for tuner_id in ("chief", "tuner0", "tuner1"):
        job = {
            "kind": "tune",
            "section": section,
            "inputs": inputs,
            "out": str(tmp_path / tuner_id),
            "directory": str(tmp_path / f"dir-{tuner_id}"),
        }
        env = {
            "KERASTUNER_TUNER_ID": tuner_id,
            "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(port),
        }
        procs.append(ml_fixtures.run_job(job, env))
    codes = ml_fixtures.wait_all(procs, TIMEOUT)
    logs = [(tmp_path / f"{t}.log").read_text()[-2000:] for t in ("chief", "tuner0", "tuner1")]
    assert codes == [0, 0, 0], logs

    chief = json.loads((tmp_path / "chief" / "result.json").read_text())
    assert chief["trials"] == 4  # the chief's oracle holds every trial's result
    assert set(chief["values"]) == {"units", "hidden_layers", "learning_rate"}
    assert 0 <= chief["score"] <= 1
    for worker in ("tuner0", "tuner1"):
        assert json.loads((tmp_path / worker / "result.json").read_text()) == {}
    ran = {
        w: len(list((tmp_path / f"dir-{w}" / "search").glob("trial_*")))
        for w in ("tuner0", "tuner1")
    }
    assert sum(ran.values()) == 4 and min(ran.values()) >= 1, ran  # both workers took trials
