"""gs:// through Beam's GCS client, on gcp-storage-emulator (127.0.0.1): ingest and statistics
read and write the emulated bucket, and a second run is cached on the objects' metadata.

Only the Beam side: TensorFlow's own GCS filesystem always calls Google's endpoints and cannot be
pointed at an emulator (README, "Object stores")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.object_store import free_port

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from beam_pipeline.core.config import load
    from beam_pipeline.io import filesystem
    from beam_pipeline.core.orchestrator import Orchestrator
    from beam_pipeline.stages import STAGES

    config_file, local_csv, remote_csv = sys.argv[1:4]
    beam = ["--project=emulated"]
    filesystem.configure(beam)
    filesystem.copy_file(local_csv, remote_csv)
    summaries = []
    for _ in range(2):
        orch = Orchestrator(load(config_file), STAGES, beam_args=beam)
        summaries.append(orch.run(to="statistics").to_json())
        orch.store.close()
    stats = summaries[0]["stages"]["statistics"]["outputs"]["statistics"]["uri"]
    examples = summaries[0]["stages"]["ingest"]["outputs"]["examples"]["uri"]
    print(json.dumps({
        "runs": summaries,
        "objects": filesystem.files_under(examples),
        "stats_exists": filesystem.exists(stats + "/Split-train/FeatureStats.pb"),
    }))
    """
)


@pytest.fixture(scope="module")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    command = [str(exe), "start", "-H", "127.0.0.1", "--port", str(port), "--in-memory"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([*command, "--default-bucket", "pipelines"], stdout=out, stderr=out)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_ingest_and_statistics_on_gcs_through_beam(gcs_emulator: str, tmp_path: Path, tiny_csv):
    config = tmp_path / "gcs.yaml"
    cfg = {
        "pipeline": {"name": "gcs", "root": "gs://pipelines/runs/gcs"},
        "metadata": {"backend": "sqlite", "path": str(tmp_path / "metadata.sqlite")},
        "ingest": {
            "source": "gs://pipelines/data/tiny.csv",
            "columns": {"amount": "float"},
            "max_rejected_fraction": 0.2,
        },
    }
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs_emulator, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config), str(tiny_csv), cfg["ingest"]["source"]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    first, second = out["runs"]
    assert first["status"] == "completed", first["error"]
    examples = first["stages"]["ingest"]["outputs"]["examples"]["uri"]
    assert examples.startswith("gs://pipelines/runs/gcs/ingest/")
    assert any(o.startswith("Split-train/data-") for o in out["objects"])
    assert any(o.startswith("rejected/") for o in out["objects"])
    assert out["stats_exists"]
    assert second["stages"]["ingest"]["status"] == "cached"
    assert second["stages"]["statistics"]["status"] == "cached"
