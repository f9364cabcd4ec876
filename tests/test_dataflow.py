"""Dataflow without network: each Beam stage's Dataflow job is built offline (Beam's --dry_run) and
checked: the stage's transforms, this package's setup.py staged as the workers' package
(--setup_file), and the object-store paths it reads and writes.

The root is on gcp-storage-emulator (127.0.0.1), so that the launcher's own file work (ML Metadata's
outputs, the previous stage's artifacts) is real; nothing is sent to Google. Between the dry runs
each stage also runs on DirectRunner, so that the next stage has real inputs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import PENGUINS_CSV, REPO
from tests.test_gcs import gcs_emulator  # noqa: F401 (the fixture)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from google.protobuf import json_format
    from apache_beam.runners.dataflow import dataflow_runner
    from beam_pipeline.core.config import load
    from beam_pipeline.core.orchestrator import Orchestrator
    from beam_pipeline.io import filesystem
    from beam_pipeline.stages import STAGES

    config_file, local_csv, remote_csv, jobs_file = sys.argv[1:5]
    jobs = []
    built = dataflow_runner.DataflowRunner.run_pipeline

    def keep_job(self, pipeline, options):  # the job as --dry_run leaves it, kept for the test
        result = built(self, pipeline, options)
        jobs.append({"options": options.get_all_options(drop_default=True),
                     "pipeline": json_format.MessageToDict(result.job.proto_pipeline)})
        return result

    dataflow_runner.DataflowRunner.run_pipeline = keep_job
    dataflow = ["--runner=DataflowRunner", "--project=emulated", "--region=europe-west1",
                "--temp_location=gs://pipelines/tmp", "--dry_run=True"]
    filesystem.configure(["--project=emulated"])
    filesystem.copy_file(local_csv, remote_csv)
    statuses = {}
    for stage in ("ingest", "statistics"):
        for name, beam in ((stage + ":dataflow", dataflow), (stage, ["--project=emulated"])):
            orch = Orchestrator(load(config_file), STAGES, beam_args=beam)
            statuses[name] = orch.run(only=stage).to_json()["stages"][stage]["status"]
            orch.store.close()
    with open(jobs_file, "w") as f:
        json.dump(jobs, f)
    print(json.dumps(statuses))
    """
)


def _paths(pipeline: dict) -> set[str]:
    """gs:// paths in the transforms' display data (what Dataflow's UI shows for each step)."""
    from apache_beam.portability.api import beam_runner_api_pb2

    found: set[str] = set()
    for transform in pipeline["components"]["transforms"].values():
        for item in transform.get("displayData", []):
            payload = beam_runner_api_pb2.LabelledPayload.FromString(
                base64.b64decode(item["payload"])
            )
            found |= set(re.findall(r"gs://[^\s'\"]+", payload.string_value))
    return found


def _staged(pipeline: dict) -> dict[str, str]:
    """The environment's staged files: name on the workers -> file on the launcher."""
    [env] = pipeline["components"]["environments"].values()
    assert env["urn"] == "beam:env:docker:v1"
    staged = {}
    for dep in env["dependencies"]:
        role = base64.b64decode(dep["rolePayload"])[2:].decode()
        staged[role] = base64.b64decode(dep["typePayload"])[2:].decode()
    return staged


@pytest.mark.slow
def test_dataflow_jobs_of_ingest_and_statistics_are_built_offline(
    gcs_emulator: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = tmp_path / "dataflow.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "df", "root": "gs://pipelines/runs/df"},
                "metadata": {"backend": "sqlite", "path": str(tmp_path / "metadata.sqlite")},
                "ingest": {"source": "gs://pipelines/data/penguins.csv"},
            }
        )
    )
    jobs_file = tmp_path / "jobs.json"
    env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs_emulator, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config), str(PENGUINS_CSV),
         "gs://pipelines/data/penguins.csv", str(jobs_file)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    statuses = json.loads(proc.stdout.strip().splitlines()[-1])
    # A dry run submits nothing and writes nothing, so the stage cannot publish: it fails.
    assert statuses == {
        "ingest:dataflow": "failed", "ingest": "completed",
        "statistics:dataflow": "failed", "statistics": "completed",
    }  # fmt: skip
    ingest, statistics = json.loads(jobs_file.read_text())

    for job in (ingest, statistics):
        options = job["options"]
        assert options["runner"] == "DataflowRunner"
        assert options["setup_file"] == str(REPO / "setup.py")
        assert options["temp_location"].startswith("gs://pipelines/tmp/")
        staged = _staged(job["pipeline"])
        # setup.py built into an sdist that the workers install: this package and its DoFns
        assert Path(staged["workflow.tar.gz"]).name == "beam-pipeline-0.1.0.tar.gz"

    names = {t["uniqueName"] for t in ingest["pipeline"]["components"]["transforms"].values()}
    assert {"Read/ReadAndEncode/ParDo(ReadAndEncode)", "Write/Writetrain/WriteImpl/WriteBundles",
            "Write/Writeeval/WriteImpl/WriteBundles", "WriteRejected"} <= names  # fmt: skip
    shards = "%(shard_num)05d-of-%(num_shards)05d"
    assert {re.sub(r"/\d+/", "/N/", p) for p in _paths(ingest["pipeline"])} == {
        f"gs://pipelines/runs/df/ingest/N/examples/Split-train/data-{shards}.tfrecord.gz",
        f"gs://pipelines/runs/df/ingest/N/examples/Split-eval/data-{shards}.tfrecord.gz",
        f"gs://pipelines/runs/df/ingest/N/examples/rejected/rejected-{shards}.jsonl",
    }

    names = {t["uniqueName"] for t in statistics["pipeline"]["components"]["transforms"].values()}
    assert {"Statistics[train]", "Statistics[eval]"} <= names
    paths = {re.sub(r"/\d+/", "/N/", p) for p in _paths(statistics["pipeline"])}
    assert paths == {  # reads the real ingest's output, writes its own prefix
        "gs://pipelines/runs/df/ingest/N/examples/Split-train/data-*.tfrecord.gz",
        "gs://pipelines/runs/df/ingest/N/examples/Split-eval/data-*.tfrecord.gz",
        "gs://pipelines/runs/df/statistics/N/statistics/Split-train/FeatureStats.pb",
        "gs://pipelines/runs/df/statistics/N/statistics/Split-eval/FeatureStats.pb",
    }
