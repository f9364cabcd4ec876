"""Artifacts and data on a real S3 API server (moto's, on 127.0.0.1): the penguins pipeline from
ingest through push with data, root and serving folder on S3, a cached second run, a failed stage's
prefix removed, scoring from and to S3, lineage with s3:// URIs; the filesystem module itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PENGUINS_CSV, REPO
from tests.object_store import S3Server, child_env

STAGES = [
    "ingest",
    "statistics",
    "schema",
    "validate",
    "transform",
    "tune",
    "train",
    "evaluate",
    "push",
]


def cli(server: S3Server, *args: str, timeout: float = 600) -> tuple[int, Any, str]:
    """``beam-pipeline ARGS`` in a child process with the S3 settings in its environment."""
    proc = subprocess.run(
        [sys.executable, "-m", "beam_pipeline.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(server),
    )
    out = proc.stdout.strip()
    data = json.loads(out) if "--json" in args and out else {}
    return proc.returncode, data, proc.stderr


def penguins_on_s3(server: S3Server, base: Path, bucket: str) -> Path:
    """The penguins config with data, root and serving folder on S3 (store: a local SQLite)."""
    server.bucket(bucket)
    server.client().upload_file(str(PENGUINS_CSV), bucket, "data/penguins.csv")
    cfg = yaml.safe_load((REPO / "configs" / "penguins.yaml").read_text())
    cfg["pipeline"]["root"] = f"s3://{bucket}/runs/penguins"
    cfg["metadata"] = {"backend": "sqlite", "path": str(base / "metadata.sqlite")}
    cfg["ingest"]["source"] = f"s3://{bucket}/data/penguins.csv"
    cfg["schema"]["path"] = str(REPO / "configs" / "penguins" / "schema.pbtxt")
    cfg["transform"]["module"] = str(REPO / "transforms" / "penguins.py")
    cfg["train"]["module"] = str(REPO / "models" / "penguins.py")
    cfg["tune"]["enabled"] = False
    cfg["train"].update(epochs=20, early_stopping_patience=0)
    cfg["evaluate"]["thresholds"] = {"accuracy": {"lower": 0.6}}
    cfg["push"]["serving_dir"] = f"s3://{bucket}/serving"
    path = base / "penguins.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def s3_runs(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("s3-penguins")
    config = penguins_on_s3(s3_server, base, "penguins")
    args = ("run", str(config), "--json", *(f"--beam-option={o}" for o in s3_server.beam_options))
    runs = []
    for _ in range(2):
        code, summary, err = cli(s3_server, *args)
        assert code == 0 and summary.get("status") == "completed", err[-4000:]
        runs.append(summary)
    print({s: first["seconds"] for s, first in runs[0]["stages"].items()})
    return {"config": config, "runs": runs, "args": args}


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
def test_scoring_reads_and_writes_s3_and_lineage_shows_s3_uris(
    s3_server: S3Server, s3_runs
) -> None:
    config = str(s3_runs["config"])
    beam = [f"--beam-option={o}" for o in s3_server.beam_options]
    code, summary, err = cli(
        s3_server,
        "score",
        config,
        "--input",
        "s3://penguins/data/*.csv",
        "--output",
        "s3://penguins/scored/one",
        "--json",
        *beam,
    )
    assert code == 0, err[-4000:]
    assert summary["rows"] == 334 and summary["rejected"] == 0
    predictions = [k for k in s3_server.keys("penguins", "scored/one/") if "predictions-" in k]
    assert predictions
    body = s3_server.client().get_object(Bucket="penguins", Key=predictions[0])["Body"].read()
    record = json.loads(body.decode().splitlines()[0])
    assert record["model_version"] == 1 and len(record["prediction"]) == 3

    model_id = s3_runs["runs"][0]["stages"]["train"]["outputs"]["model"]["id"]
    code, tree, err = cli(s3_server, "lineage", config, "--artifact", str(model_id), "--json")
    assert code == 0, err[-2000:]
    text = json.dumps(tree)
    assert "s3://penguins/runs/penguins/train/" in text
    assert "s3://penguins/runs/penguins/ingest/" in text


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
# The portable runner as a cluster runs it: job server + external worker pool, data on S3


def _records(server: S3Server, uri: str, split: str) -> list[dict[str, tuple[float, ...]]]:
    """The tf.Examples of one split of an Examples artifact on S3, as sorted rows of values."""
    import gzip
    import struct

    from tensorflow.core.example import example_pb2

    bucket, key = uri[len("s3://") :].split("/", 1)
    rows = []
    for name in server.keys(bucket, f"{key}/Split-{split}/"):
        data = gzip.decompress(server.client().get_object(Bucket=bucket, Key=name)["Body"].read())
        pos = 0
        while pos < len(data):  # TFRecord framing: length, its CRC, the record, its CRC
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            ex = example_pb2.Example.FromString(data[pos + 12 : pos + 12 + length])
            pos += 16 + length
            rows.append(
                {
                    k: tuple(round(v, 4) for v in (f.float_list.value or f.int64_list.value))
                    for k, f in ex.features.feature.items()
                }
            )
    return sorted(rows, key=lambda r: sorted(r.items()))


def _stats(server: S3Server, uri: str, split: str) -> dict[str, Any]:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    bucket, key = uri[len("s3://") :].split("/", 1)
    body = server.client().get_object(Bucket=bucket, Key=f"{key}/Split-{split}/FeatureStats.pb")
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(body["Body"].read())
    [dataset] = stats.datasets
    features = {}
    for f in dataset.features:
        common = (
            f.num_stats.common_stats if f.HasField("num_stats") else f.string_stats.common_stats
        )
        features[f.path.step[-1]] = (
            common.num_non_missing,
            round(f.num_stats.mean, 6),
            round(f.num_stats.std_dev, 6),
            round(f.num_stats.min, 6),
            round(f.num_stats.max, 6),
        )
    return {"num_examples": dataset.num_examples, "features": features}


def _json_object(server: S3Server, uri: str) -> Any:
    bucket, key = uri[len("s3://") :].split("/", 1)
    return json.loads(server.client().get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.mark.slow
def test_portable_runner_with_an_external_worker_pool_gives_directrunner_artifacts(
    s3_server: S3Server, s3_runs, tmp_path: Path
) -> None:
    from tests.object_store import start_portable

    config = str(s3_runs["config"])
    direct = s3_runs["runs"][0]["stages"]
    cluster = start_portable(tmp_path / "cluster", child_env(s3_server))
    try:
        beam = [f"--beam-option={o}" for o in (*s3_server.beam_options, *cluster.beam_options)]
        code, data, err = cli(
            s3_server, "run", config, "--to", "transform", "--no-cache", "--json", *beam
        )
        assert code == 0, err[-4000:] + cluster.tail()
        code, evaluated, err = cli(
            s3_server, "run", config, "--only", "evaluate", "--no-cache", "--json", *beam
        )
        assert code == 0, err[-4000:] + cluster.tail()
        code, scored, err = cli(
            s3_server,
            "score", config, "--input", "s3://penguins/data/*.csv",
            "--output", "s3://penguins/scored/portable", "--json", *beam,
        )  # fmt: skip
        assert code == 0, err[-4000:] + cluster.tail()
    finally:
        cluster.stop()
    assert "Starting worker" in cluster.tail() or "worker" in cluster.tail().lower()
    portable = {**data["stages"], "evaluate": evaluated["stages"]["evaluate"]}

    def uri(stages: dict[str, Any], stage: str, key: str) -> str:
        return stages[stage]["outputs"][key]["uri"]

    for stage, key in [("ingest", "examples"), ("transform", "transformed_examples")]:
        assert uri(portable, stage, key) != uri(direct, stage, key)  # a new execution
        for split in ("train", "eval"):
            ours = _records(s3_server, uri(portable, stage, key), split)
            theirs = _records(s3_server, uri(direct, stage, key), split)
            assert len(ours) == len(theirs) > 0 and ours == theirs, (stage, split)
    for split in ("train", "eval"):
        assert _stats(s3_server, uri(portable, "statistics", "statistics"), split) == _stats(
            s3_server, uri(direct, "statistics", "statistics"), split
        )
    ours = _json_object(s3_server, uri(portable, "evaluate", "evaluation") + "/metrics.json")
    theirs = _json_object(s3_server, uri(direct, "evaluate", "evaluation") + "/metrics.json")
    assert ours["overall"] == pytest.approx(theirs["overall"]) and ours["overall"]
    assert scored["rows"] == 334 and scored["rejected"] == 0
