"""Artifacts and data on a real S3 API server (moto's, on 127.0.0.1): the penguins pipeline from
ingest through push with data, root and serving folder on S3, a cached second run, a failed stage's
prefix removed, lineage with s3:// URIs; the filesystem module itself. Scoring from and to S3 runs
in tests/test_portable.py (on the portable runner, against this session's DirectRunner run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from beam_pipeline.core.stage_sections import STAGE_ORDER
from tests.object_store import S3Server, cli

STAGES = STAGE_ORDER  # every stage of the pipeline, in order


@pytest.mark.slow
def test_penguins_pipeline_on_s3_from_ingest_to_push(s3_server: S3Server, s3_runs) -> None:
    first, second = s3_runs["runs"]
    assert [first["stages"][s]["status"] for s in STAGES] == ["completed"] * len(STAGES)
    for stage in STAGES:
        for out in first["stages"][stage]["outputs"].values():
            assert out["uri"].startswith("s3://penguins/runs/penguins/"), out
    assert first["blessed"] is True and first["pushed_version"] == 1
    keys = s3_server.keys("penguins")
    examples = first["stages"]["ingest"]["outputs"]["examples"]["uri"].split("/", 3)[3]
    assert any(k.startswith(f"{examples}/Split-train/data-") for k in keys)
    assert "serving/penguins/1/saved_model.pb" in keys
    assert not any("/." in k or "-temp-" in k for k in keys), "staging left behind"
    # Nothing of the pipeline is on the local disk but the SQLite store.
    assert sorted(p.name for p in s3_runs["config"].parent.iterdir()) == [
        "metadata.sqlite",
        "penguins.yaml",
    ]
    assert [second["stages"][s]["status"] for s in STAGES] == ["cached"] * len(STAGES)


@pytest.mark.slow
def test_lineage_shows_s3_uris(s3_server: S3Server, s3_runs) -> None:
    """(Scoring from and to S3 is proven in tests/test_portable.py, on the portable runner.)"""
    config = str(s3_runs["config"])
    model_id = s3_runs["runs"][0]["stages"]["train"]["outputs"]["model"]["id"]
    code, tree, err = cli(s3_server, "lineage", config, "--artifact", str(model_id), "--json")
    assert code == 0, err[-2000:]
    text = json.dumps(tree)
    assert "s3://penguins/runs/penguins/train/" in text
    assert "s3://penguins/runs/penguins/ingest/" in text


def test_doctor_on_an_s3_root_finds_nothing_to_repair(s3_server: S3Server, s3_runs) -> None:
    """Every execution prefix of the two runs holds LIVE artifacts: none is an orphan."""
    config = str(s3_runs["config"])
    options = [f"--beam-option={o}" for o in s3_server.beam_options]
    code, findings, err = cli(s3_server, "doctor", config, "--dry-run", "--json", *options)
    assert code == 0, err[-2000:]
    assert findings == {"findings": [], "dry_run": True}, findings


@pytest.mark.slow
def test_a_failed_stage_on_s3_leaves_no_objects(
    s3_server: S3Server, s3_runs, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def preprocessing_fn(inputs):\n    raise RuntimeError('boom')\n")
    code, summary, _ = cli(
        s3_server, *s3_runs["args"], "--only", "transform", "--set", f"transform.module={broken}"
    )
    assert code == 1 and summary["stages"]["transform"]["status"] == "failed"
    executions = {k.split("/")[3] for k in s3_server.keys("penguins", "runs/penguins/transform/")}
    live = s3_runs["runs"][0]["stages"]["transform"]["outputs"]["transform_graph"]["uri"]
    assert executions == {live.split("/")[6]}  # only the published execution's prefix


# ---------------------------------------------------------------------------------------------
# The filesystem module on S3, in-process


@pytest.fixture
def s3_filesystem(s3_server: S3Server):
    from apache_beam.io.filesystems import FileSystems

    from beam_pipeline.io import filesystem

    before = FileSystems._pipeline_options  # noqa: SLF001 - restored for the other tests
    filesystem.configure(s3_server.beam_options)
    try:
        yield filesystem
    finally:
        FileSystems.set_options(before)


def test_object_paths_on_s3(s3_server: S3Server, s3_filesystem) -> None:
    fs = s3_filesystem
    root = fs.as_path(s3_server.bucket("paths")) / "runs"
    assert str(root) == "s3://paths/runs" and not root.exists()
    (root / "a" / "Split-train").mkdir(parents=True)  # no folders on S3: nothing happens
    assert not root.exists()
    (root / "a" / "Split-train" / "data-0.gz").write_bytes(b"x" * 10)
    (root / "a" / "Split-eval" / "data-0.gz").write_bytes(b"")  # empty objects are written too
    (root / "a" / "schema.pbtxt").write_text("feature {}")
    assert root.is_dir() and (root / "a").exists() and not (root / "b").exists()
    assert sorted(p.name for p in (root / "a").iterdir()) == [
        "Split-eval",
        "Split-train",
        "schema.pbtxt",
    ]
    assert [p.name for p in (root / "a").glob("Split-*/data-*.gz")] == ["data-0.gz", "data-0.gz"]
    assert (root / "a" / "schema.pbtxt").read_text() == "feature {}"
    fs.copytree(root / "a", root / "b", last=["schema.pbtxt"])
    assert fs.files_under(root / "b") == fs.files_under(root / "a")
    fs.rmtree(root / "a")
    assert not (root / "a").exists() and (root / "b" / "Split-eval" / "data-0.gz").is_file()


def test_the_s3_fingerprint_reads_no_data(s3_server: S3Server, s3_filesystem) -> None:
    fs = s3_filesystem
    bucket = s3_server.bucket("prints")
    client = s3_server.client()
    client.put_object(Bucket="prints", Key="a.csv", Body=b"x,y\n1,2\n")
    client.put_object(Bucket="prints", Key="copy.csv", Body=b"x,y\n1,2\n")
    first = fs.fingerprint([f"{bucket}/a.csv"])
    log_size = s3_server.log.stat().st_size
    assert fs.fingerprint([f"{bucket}/copy.csv"]) == first  # same bytes, another name
    requests = s3_server.log.read_text()[log_size:]
    assert "/prints/copy.csv" in requests  # the log shows path-style requests...
    assert "GET /prints/copy.csv" not in requests  # ...and HEAD or LIST only: no download
    client.put_object(Bucket="prints", Key="a.csv", Body=b"x,y\n1,3\n")
    assert fs.fingerprint([f"{bucket}/a.csv"]) != first


def test_sqlite_next_to_an_object_store_root_needs_a_local_path(tmp_path: Path, capsys) -> None:
    from tests.conftest import run_cli, write_config

    cfg = write_config(
        tmp_path, {"source": "s3://b/data.csv"}, pipeline={"name": "t", "root": "s3://b/runs"}
    )
    # --only ingest: the user modules of later stages are not what this test is about
    code, _, err = run_cli(["run", str(cfg), "--only", "ingest"], capsys)
    assert code == 2 and "metadata.path: SQLite needs a local file" in err, err
