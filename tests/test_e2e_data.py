"""The data half end to end on the bundled data, through the CLI: ingest → statistics → schema →
validate; caching by content; the validation gate."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from tests.conftest import PENGUINS_CSV, REPO, TAXI_CSV, run_cli

DATA_STAGES = ["ingest", "statistics", "schema", "validate"]


def _config(tmp_path: Path, name: str, source: Path) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    cfg["pipeline"]["root"] = str(tmp_path / "root")
    cfg["ingest"]["source"] = str(source)
    if (cfg.get("schema") or {}).get("path"):
        cfg["schema"]["path"] = str(REPO / "configs" / cfg["schema"]["path"])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _statuses(out: dict) -> list[str]:
    return [out["stages"][s]["status"] for s in DATA_STAGES]


def test_taxi_data_half_is_cached_by_content(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data.csv"
    shutil.copy(TAXI_CSV, data)
    cfg = _config(tmp_path, "taxi", data)
    args = ["run", str(cfg), "--to", "validate", "--json"]

    code, first, err = run_cli(args, capsys)
    assert code == 0, err
    assert first["status"] == "completed" and _statuses(first) == ["completed"] * 4
    examples = Path(first["stages"]["ingest"]["outputs"]["examples"]["uri"])
    stats = Path(first["stages"]["statistics"]["outputs"]["statistics"]["uri"])
    anomalies = Path(first["stages"]["validate"]["outputs"]["anomalies"]["uri"])
    assert list(examples.glob("Split-train/*.tfrecord.gz"))
    assert (stats / "Split-eval" / "FeatureStats.pb").stat().st_size > 0
    page = (stats / "Split-train" / "statistics.html").read_text()
    assert "11,9" in page and "payment_type" in page and "Credit Card" in page
    assert "<script" not in page  # opens offline
    assert "<svg" in page  # histograms, inline
    assert "https://" not in page and not (stats / "Split-train" / "facets.html").exists()
    assert (anomalies / "anomalies.txt").read_text().strip() == "no anomalies"

    os.utime(data, (1, 1))  # same bytes, new mtime
    code, second, _ = run_cli(args, capsys)
    assert code == 0 and _statuses(second) == ["cached"] * 4
    first_s = sum(first["stages"][s]["seconds"] for s in DATA_STAGES)
    second_s = sum(second["stages"][s]["seconds"] for s in DATA_STAGES)
    assert second_s < first_s / 3, (first_s, second_s)

    lines = data.read_text().splitlines()
    lines[1] = lines[1].replace("Credit Card", "Cash")
    data.write_text("\n".join(lines) + "\n")
    code, third, _ = run_cli(args, capsys)
    assert code == 0 and third["stages"]["ingest"]["status"] == "completed"
    assert third["stages"]["statistics"]["status"] == "completed"

    # Lineage: validate's anomalies go back to the examples through statistics.
    store = Store(load(cfg))
    art_id = first["stages"]["validate"]["outputs"]["anomalies"]["id"]
    tree = store.lineage(art_id)
    stats_node = tree["produced_by"]["inputs"]["statistics"]
    assert stats_node["produced_by"]["inputs"]["examples"]["artifact"]["type"] == "Examples"
    assert len(store.runs()) == 3


def test_curated_schema_violation_stops_the_run_with_exit_3(tmp_path: Path, capsys) -> None:
    lines = PENGUINS_CSV.read_text().splitlines()
    lines[1:21] = ["5" + line[1:] for line in lines[1:21]]  # species 5: outside the domain 0..2
    data = tmp_path / "penguins.csv"
    data.write_text("\n".join(lines) + "\n")
    cfg = _config(tmp_path, "penguins", data)
    code, out, err = run_cli(["run", str(cfg), "--to", "validate", "--json"], capsys)
    assert code == 3
    assert out["status"] == "stopped" and out["stages"]["validate"]["status"] == "stopped"
    assert any(a["feature"] == "species" for a in out["anomalies"])
    assert "validation stopped the run" in err and "species" in err
    # The verdict is cached with the data: rerunning stops again, without recomputing.
    code, again, _ = run_cli(["run", str(cfg), "--to", "validate", "--json"], capsys)
    assert code == 3 and again["stages"]["validate"]["status"] == "stopped"
    assert again["stages"]["ingest"]["status"] == "cached"
    assert all(a["blocking"] for a in out["anomalies"])
    # When schema findings only warn, the run goes on; they are printed and listed, not blocking.
    cfg_data = yaml.safe_load(cfg.read_text())
    cfg_data["validation"]["fail_on"] = ["skew"]
    cfg.write_text(yaml.safe_dump(cfg_data))
    code, warned, err = run_cli(["run", str(cfg), "--to", "validate", "--json"], capsys)
    assert code == 0 and warned["stages"]["validate"]["status"] == "completed", err
    species = [a for a in warned["anomalies"] if a["feature"] == "species"]
    assert {a["split"] for a in species} == {"train", "eval"}
    assert all(a["blocking"] is False and a["category"] == "schema" for a in species)
    assert "warning (not blocking): validate: train: species: INT_TYPE_BIG_INT" in err


def test_schema_export(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path, "penguins", PENGUINS_CSV)
    cfg_data = yaml.safe_load(cfg.read_text())
    cfg_data["schema"]["path"] = None
    cfg.write_text(yaml.safe_dump(cfg_data))
    code, _, err = run_cli(["run", str(cfg), "--to", "schema", "--json"], capsys)
    assert code == 0, err
    dest = tmp_path / "exported.pbtxt"
    code, _, _ = run_cli(["schema", str(cfg), "--export", str(dest)], capsys)
    assert code == 0
    text = dest.read_text()
    assert 'name: "culmen_length_mm"' in text and 'name: "species"' in text


def test_later_spans_are_checked_against_the_pipeline_schema(tmp_path: Path, capsys) -> None:
    """Inferred once: a new column (a leaked label) in later data stops the run against the
    first passing run's schema; export never takes a stopped run's schema; accepting the evolved
    schema (recorded in ML Metadata) lets the data through."""
    cfg = _config(tmp_path, "penguins", PENGUINS_CSV)
    cfg_data = yaml.safe_load(cfg.read_text())
    cfg_data["schema"]["path"] = None
    cfg_data["validation"]["fail_on"] = ["schema", "skew"]  # a new column has no drift baseline
    cfg.write_text(yaml.safe_dump(cfg_data))
    run = ["run", str(cfg), "--to", "validate", "--json"]
    code, first, err = run_cli(run, capsys)
    assert code == 0, err

    lines = PENGUINS_CSV.read_text().splitlines()
    leaked = tmp_path / "leaked.csv"
    leaked.write_text(
        "\n".join([lines[0] + ",leak"] + [f"{x},{x.split(',')[0]}" for x in lines[1:]]) + "\n"
    )
    cfg_data["ingest"]["source"] = str(leaked)
    cfg.write_text(yaml.safe_dump(cfg_data))
    code, second, err = run_cli(run, capsys)
    assert code == 3, err
    assert any(a["feature"] == "leak" and a["blocking"] for a in second["anomalies"])

    dest = tmp_path / "exported.pbtxt"
    code, _, err = run_cli(
        ["schema", str(cfg), "--export", str(dest), "--run", second["run_id"]], capsys
    )
    assert code == 2 and "passed validation" in err and not dest.exists()
    code, _, _ = run_cli(["schema", str(cfg), "--export", str(dest)], capsys)
    assert code == 0 and 'name: "species"' in dest.read_text() and "leak" not in dest.read_text()

    code, accepted, err = run_cli(["schema", str(cfg), "--accept", "--json"], capsys)
    assert code == 0, err
    assert 'name: "leak"' in Path(accepted["schema"]).read_text()
    store = Store(load(cfg))
    [art] = store.artifacts([accepted["artifact_id"]])
    assert art.properties["accepted"] is True and store.producer(art.id) is not None
    code, third, err = run_cli(run, capsys)
    assert code == 0, err
    assert third["stages"]["schema"]["status"] == "completed"
