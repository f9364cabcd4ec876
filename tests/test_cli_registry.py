"""The command line on a trained pipeline (the shared session pipeline; issue 10, items 11-12)."""

from __future__ import annotations

import logging

import pytest

from tests import pipeline_fixtures as pf
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_machine_output_has_booleans_and_iso_times(tmp_path, capsys) -> None:
    config = str(pf.copy_pipeline(tmp_path))
    lineage = pf.json_output(["lineage", config, "--model", "1", "--json"], capsys)
    [blessing] = [
        d for d in lineage["downstream"] if d["kind"] == "evaluate" and d["role"] == "model"
    ]
    assert blessing["outputs"]["blessing"]["blessed"] is True
    [first, *_] = pf.json_output(["runs", config, "--json"], capsys)["runs"]
    assert first["started"].endswith("+00:00") and "T" in first["started"]
    models = pf.json_output(["models", config, "--json"], capsys)["models"]
    assert models[0]["blessed"] is True and "T" in models[0]["created"]


def test_reject_does_not_say_push_and_schema_export_keeps_a_curated_file(
    tmp_path, capsys, caplog
) -> None:
    config = str(pf.copy_pipeline(tmp_path))
    with caplog.at_level(logging.INFO, logger="beam_pipeline"):
        code, _, _ = run_cli(["reject", config, "--model", "2", "--comment", "worse"], capsys)
    assert code == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "rejected" in said and "push with" not in said
    curated = tmp_path / "schema.pbtxt"
    curated.write_text("# curated by hand\n")
    code, _, err = run_cli(["schema", config, "--export", str(curated)], capsys)
    assert code == 2 and "--force" in err and curated.read_text() == "# curated by hand\n"
    code, out, _ = run_cli(
        ["schema", config, "--export", str(curated), "--force", "--json"], capsys
    )
    assert code == 0 and out["schema"] == str(curated) and "feature" in curated.read_text()


def test_score_publishes_at_once_and_records_absolute_paths(
    tmp_path, capsys, monkeypatch, killed_at
) -> None:
    config = str(pf.copy_pipeline(tmp_path))
    data = tmp_path / "in" / "taxi.csv"
    data.parent.mkdir()
    data.write_text("\n".join(pf.TAXI_CSV.read_text().splitlines()[:301]) + "\n")
    out = tmp_path / "preds"
    args = ["score", config, "--input", str(data), "--output", str(out), "--model", "1"]
    killed = killed_at("score:written", "cli", *args)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not out.exists(), "a job killed before its publish leaves no visible output"

    monkeypatch.chdir(tmp_path)  # relative paths in, absolute paths recorded
    rel = ["score", config, "--input", "in/taxi.csv", "--output", "preds", "--model", "1"]
    code, summary, _ = run_cli([*rel, "--json"], capsys)
    assert code == 0 and summary["rows"] == 300
    assert summary["input"] == str(data) and summary["output"] == str(out)
    assert sorted(p.name for p in out.iterdir())[-1] == "rejected"
    assert not list(tmp_path.glob(".preds.*")), "no staging folder is left"
