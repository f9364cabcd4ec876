"""Runner options: the same pipeline on DirectRunner, the portable runner and remote runners."""

from __future__ import annotations

from pathlib import Path

from beam_pipeline.beam import beam_args
from beam_pipeline.config import load
from beam_pipeline.metadata import Store
from tests.conftest import run_cli, write_config


def _config(tmp_path: Path, tiny_csv: Path, **beam: object) -> Path:
    ingest = {"source": str(tiny_csv), "columns": {"amount": "float"}, "max_rejected_fraction": 0.2}
    return write_config(tmp_path, ingest, beam=beam or {})


def test_direct_runner_gets_its_running_mode(tmp_path, tiny_csv) -> None:
    cfg = load(_config(tmp_path, tiny_csv, direct_running_mode="multi_processing"))
    args = beam_args(cfg)
    assert "--runner=DirectRunner" in args
    assert "--direct_running_mode=multi_processing" in args
    assert not any(a.startswith("--setup_file") for a in args)


def test_remote_runners_ship_this_package_with_setup_py(tmp_path, tiny_csv) -> None:
    cfg = load(_config(tmp_path, tiny_csv))
    for runner in ("DataflowRunner", "FlinkRunner", "SparkRunner"):
        args = beam_args(cfg, [f"--runner={runner}", "--project=p"])
        [setup] = [a for a in args if a.startswith("--setup_file=")]
        assert Path(setup.split("=", 1)[1]).name == "setup.py"
        assert Path(setup.split("=", 1)[1]).is_file()
        assert args[-3:-1] == [f"--runner={runner}", "--project=p"]  # last --runner wins in Beam
    options = cfg.beam.options
    assert options == []


def test_ingest_runs_on_the_portable_runner(tmp_path, tiny_csv, capsys) -> None:
    """The portable protocol path that Flink and Spark job servers drive, with an embedded job
    server and loopback workers (no jars or network needed)."""
    cfg = _config(tmp_path, tiny_csv)
    code, out, err = run_cli(
        [
            "run",
            str(cfg),
            "--only",
            "ingest",
            "--json",
            "--runner",
            "PortableRunner",
            "--beam-option=--job_endpoint=embed",
            "--beam-option=--environment_type=LOOPBACK",
        ],
        capsys,
    )
    assert code == 0, err
    uri = Path(out["stages"]["ingest"]["outputs"]["examples"]["uri"])
    [examples] = Store(load(cfg)).artifacts_of_type("Examples")
    assert sum(examples.properties["row_counts"].values()) == 19
    assert examples.properties["rejected"] == 1  # Beam counters come back from the job server
    assert list(uri.glob("Split-train/*.tfrecord.gz"))
    [rejected] = list((uri / "rejected").glob("*.jsonl"))
    assert "not-a-number" in rejected.read_text()
