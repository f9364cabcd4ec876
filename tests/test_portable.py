"""The whole pipeline on the portable runner as a cluster runs it: a job server and an external
worker pool, each its own process in its own folder, ``--environment_type=EXTERNAL``, data and
root on the S3 server. Ingest, statistics, transform, evaluate and score give the artifacts the
DirectRunner gave on the same input (the session's `s3_runs`); score reads from and writes to S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.object_store import S3Server, child_env, cli


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
    assert ours["overall"]["candidate"]["example_count"] == 72  # the eval split: 72 of 334 rows
    assert ours["overall"]["candidate"] == pytest.approx(theirs["overall"]["candidate"])
    # score read its input from S3 and wrote its predictions there
    assert scored["rows"] == 334 and scored["rejected"] == 0
    predictions = [k for k in s3_server.keys("penguins", "scored/portable/") if "predictions-" in k]
    assert predictions
    body = s3_server.client().get_object(Bucket="penguins", Key=predictions[0])["Body"].read()
    record = json.loads(body.decode().splitlines()[0])
    assert record["model_version"] == 1 and len(record["prediction"]) == 3
