"""`beam-pipeline init`: profiling a user's file, the files it writes, and those files run.

The end-to-end test runs two whole pipelines (a regression and a binary classifier on 400
generated rows each, one tuning trial, 10 epochs): about 2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from beam_pipeline.core.errors import ConfigError
from beam_pipeline.scaffold.profile import profile, safe_name
from tests.conftest import run_cli
from tests.pipeline_fixtures import cli
from tests.scaffold.datasets import churn, gems

TINY_BUDGET = (
    "--set=tune.max_trials=1",
    "--set=tune.epochs=1",
    "--set=tune.steps_per_epoch=2",
    "--set=train.epochs=10",
)


def test_profile_of_a_regression_file(tmp_path: Path) -> None:
    p = profile(str(gems(tmp_path / "gems.csv")), "price")
    assert p.task == "regression" and p.rows == 400
    roles = {c.name: c.role for c in p.columns}
    assert roles == {
        "price": "label",
        "id": "dropped",  # consecutive integers: a row id
        "carat": "numeric",
        "cut": "categorical",
        "color": "categorical",
        "depth": "numeric",
        "table": "numeric",
    }
    assert p.slices == ["cut", "color"]
    depth = next(c for c in p.columns if c.name == "depth")
    assert 0 < depth.missing < 0.1
    assert 1000 < p.label_std < 10_000


def test_profile_of_a_classification_file(tmp_path: Path) -> None:
    p = profile(str(churn(tmp_path / "churn.csv")), "churned")
    assert (p.task, p.classes, p.positive) == ("binary", ["no", "yes"], "yes")
    assert {c.name: c.role for c in p.columns}["customer"] == "dropped"  # an id per row
    multi = profile(str(churn(tmp_path / "churn.csv")), "contract")
    assert multi.task == "multiclass"
    assert multi.classes == ["month-to-month", "one year", "two year"]


def test_parquet_and_jsonl_are_read_like_ingest_reads_them(tmp_path: Path) -> None:
    table = pa.table({"x": [1.5, 2.5, None, 4.0] * 25, "kind": ["a", "b", "a", "c"] * 25})
    table = table.append_column("y", pa.array([0, 1] * 50))
    pq.write_table(table, tmp_path / "d.parquet")
    p = profile(str(tmp_path / "d.parquet"), "y")
    assert p.format == "parquet" and p.task == "binary" and p.positive == 1
    rows = [json.dumps(r) for r in table.to_pylist()]
    (tmp_path / "d.jsonl").write_text("\n".join(rows) + "\n")
    j = profile(str(tmp_path / "d.jsonl"), "x", task="regression")
    assert j.format == "jsonl" and {c.name: c.kind for c in j.columns}["x"] == "float"


def test_safe_names() -> None:
    taken: set[str] = set()
    assert [safe_name(n, taken) for n in ("a b", "a_b", "1st", "<>")] == [
        "a_b",
        "a_b_2",
        "f_1st",
        "column",
    ]


@pytest.mark.parametrize(
    ("task", "label", "message"),
    [
        ("binary", "carat", "expected exactly 2"),
        ("regression", "cut", "expected numbers"),
        ("auto", "nope", "no column 'nope'"),
    ],
)
def test_a_label_that_does_not_fit_is_a_config_error(
    tmp_path: Path, task: str, label: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        profile(str(gems(tmp_path / "gems.csv")), label, task)


def test_bad_input_is_exit_2_with_the_reason(tmp_path: Path, capsys) -> None:
    data = gems(tmp_path / "gems.csv")
    code, out, err = run_cli(
        ["init", "gems", "--data", str(data), "--label", "nope", "--dir", str(tmp_path), "--json"],
        capsys,
    )
    assert code == 2 and "--label: no column 'nope'" in out["error"], err
    assert "columns are ['id', 'carat'" in err
    assert not (tmp_path / "configs").exists(), "nothing written on an error"

    (tmp_path / "empty.csv").write_text("")
    code, _, err = run_cli(
        ["init", "e", "--data", str(tmp_path / "empty.csv"), "--label", "y"], capsys
    )
    assert code == 2 and "empty file" in err, err
    (tmp_path / "header.csv").write_text("a,y\n")
    code, _, err = run_cli(
        ["init", "e", "--data", str(tmp_path / "header.csv"), "--label", "y"], capsys
    )
    assert code == 2 and "has no rows" in err, err
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    code, _, err = run_cli(
        ["init", "e", "--data", str(tmp_path / "junk.parquet"), "--label", "y"], capsys
    )
    assert code == 2 and "cannot read" in err and "junk.parquet" in err, err
    code, _, err = run_cli(
        ["init", "e", "--data", str(tmp_path / "gone.csv"), "--label", "y"], capsys
    )
    assert code == 2 and "no such file" in err, err
    code, _, err = run_cli(["init", "bad name", "--data", str(data), "--label", "price"], capsys)
    assert code == 2 and "letters, digits" in err, err


def test_init_does_not_overwrite_without_force(tmp_path: Path, capsys) -> None:
    data = str(gems(tmp_path / "gems.csv"))
    args = ["init", "gems", "--data", data, "--label", "price", "--dir", str(tmp_path)]
    assert run_cli(args, capsys)[0] == 0
    config = tmp_path / "configs" / "gems.yaml"
    loaded = yaml.safe_load(config.read_text())
    assert loaded["ingest"]["source"] == "../gems.csv"  # relative to the config's folder
    assert loaded["evaluate"]["slices"] == ["cut", "color"]
    config.write_text(config.read_text() + "# my edit\n")
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--force" in err
    assert config.read_text().endswith("# my edit\n")
    assert run_cli([*args, "--force"], capsys)[0] == 0
    # The files a user owns read like the repository's own: ruff-clean at line length 100.
    for check in (["check", "--select", "E,F,W,I"], ["format", "--check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", *check, "--line-length", "100", str(tmp_path)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_generated_pipelines_run_end_to_end_with_no_edits(tmp_path: Path) -> None:
    """Regression and binary classification: init, then run (tune included), evaluated with
    slices, blessed and pushed; the served folder holds version 1 of each."""
    for name, data, label, metric in (
        ("gems", gems(tmp_path / "data" / "gems.csv"), "price", "rmse"),
        ("churn", churn(tmp_path / "data" / "churn.csv"), "churned", "auc"),
    ):
        code, written, err = cli(
            "init", name, "--data", str(data), "--label", label, "--dir", str(tmp_path), "--json"
        )
        assert code == 0, err
        code, summary, err = cli("run", written["config"], "--json", *TINY_BUDGET)
        assert code == 0 and summary["status"] == "completed", err[-3000:]
        assert [s["status"] for s in summary["stages"].values()] == ["completed"] * 9
        assert metric in summary["metrics"] and summary["blessed"] is True, summary
        assert summary["pushed_version"] == 1
        assert (tmp_path / "serving" / name / "1" / "saved_model.pb").is_file()
        metrics = json.loads(
            Path(
                summary["stages"]["evaluate"]["outputs"]["evaluation"]["uri"], "metrics.json"
            ).read_text()
        )
        sliced = {key.split("=")[0] for key in metrics["slices"]}
        assert sliced == set(written["slices"]) and sliced, metrics["slices"].keys()


def test_the_quality_bench_baseline(tmp_path: Path) -> None:
    """`./scripts/bench init`'s parts that run without a pipeline: its data and the GBT baseline."""
    import importlib.util

    import pandas as pd

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("bench_init", REPO / "scripts" / "bench_init.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for name, label in (("gems", "price"), ("diabetes", "target"), ("penguins", "body_mass_g")):
        path, got = bench.write_data(name, tmp_path, 300, 0)
        assert got == label
        frame = pd.read_csv(path)
        train, test = frame.iloc[: len(frame) * 4 // 5], frame.iloc[len(frame) * 4 // 5 :]
        rmse = bench.baseline_rmse(train, test, label, ["id"])
        assert 0 < rmse < float(test[label].std()), (name, rmse)


def test_a_column_name_tensorflow_cannot_take_is_left_out_with_the_reason(tmp_path: Path) -> None:
    from beam_pipeline.core import preflight
    from beam_pipeline.core.config import load
    from beam_pipeline.scaffold import init

    data = tmp_path / "d.csv"
    rows = "\n".join(f"{i % 7},{i % 3},{i * 1.5}" for i in range(60))
    data.write_text("support calls,plan,y\n" + rows + "\n")
    written = init("d", str(data), "y", str(tmp_path))
    calls = next(c for c in written.profile.columns if c.name == "support calls")
    assert calls.role == "dropped" and "'support_calls'" in calls.why
    config = load(written.config)
    assert config.section("ingest").drop == ["support calls"]
    preflight.check(config, ["ingest", "transform"], [])  # the generated config passes
    pairs = "\n".join(f"{i},{i % 2}" for i in range(60))
    (tmp_path / "e.csv").write_text("a,the label\n" + pairs + "\n")
    with pytest.raises(ConfigError, match="--label: column 'the label'.*cannot be a model input"):
        init("e", str(tmp_path / "e.csv"), "the label", str(tmp_path))
