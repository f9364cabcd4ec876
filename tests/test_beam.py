"""Runner options: the same pipeline on DirectRunner, the portable runner and remote runners."""

from __future__ import annotations

from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.core.config import load
from beam_pipeline.core.metadata import Store
from beam_pipeline.runners import engines
from beam_pipeline.runners.options import beam_args, runs_in_process
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


def test_a_command_line_running_mode_overrides_the_config(tmp_path, tiny_csv) -> None:
    cfg = load(_config(tmp_path, tiny_csv, direct_running_mode="in_memory"))
    args = beam_args(cfg, ["--direct_running_mode=multi_processing", "--direct_num_workers=3"])
    opts = PipelineOptions(args).get_all_options()
    assert opts["direct_running_mode"] == "multi_processing"
    assert opts["direct_num_workers"] == 3
    assert not runs_in_process(cfg, ["--direct_running_mode=multi_processing"], str(tmp_path))
    assert runs_in_process(cfg, None, str(tmp_path))


def test_remote_runners_ship_this_package_with_setup_py(tmp_path, tiny_csv, monkeypatch) -> None:
    monkeypatch.setenv(engines.CACHE_ENV, str(tmp_path / "cache"))  # job-server jars, see below
    for engine in engines.ENGINES.values():
        engine.job_server_jar(tmp_path / "cache").parent.mkdir(parents=True, exist_ok=True)
        engine.job_server_jar(tmp_path / "cache").write_bytes(b"PK")
    cfg = load(_config(tmp_path, tiny_csv), ["pipeline.root=gs://b/runs"])
    image = "--sdk_container_image=europe-docker.pkg.dev/p/r/beam-pipeline:1"
    requirements = f"--requirements_file={tmp_path / 'requirements.txt'}"
    for runner in ("DataflowRunner", "FlinkRunner", "SparkRunner"):
        extra = [f"--runner={runner}", "--project=p", "--temp_location=gs://b/tmp", image]
        args = beam_args(cfg, [*extra, requirements])
        [setup] = [a for a in args if a.startswith("--setup_file=")]
        assert Path(setup.split("=", 1)[1]).name == "setup.py"
        assert Path(setup.split("=", 1)[1]).is_file()
        assert args[1:6] == [*extra, requirements]  # passed through; the last --runner wins
        options = PipelineOptions(args).get_all_options()
        assert options["runner"] == runner and options["sdk_container_image"] == image.split("=")[1]
        assert options["requirements_file"].endswith("requirements.txt")
    # A setup_file of the user's own is kept, not doubled.
    args = beam_args(cfg, ["--runner=FlinkRunner", "--setup_file=/src/setup.py"])
    assert [a for a in args if a.startswith("--setup_file")] == ["--setup_file=/src/setup.py"]
    assert cfg.beam.options == []


@pytest.mark.parametrize(
    ("root", "extra", "message"),
    [
        ("runs", ["--temp_location=gs://b/tmp"], "pipeline.root: DataflowRunner workers cannot"),
        ("gs://b/runs", ["--temp_location=/tmp/x"], "--temp_location: DataflowRunner needs a gs"),
        ("gs://b/runs", ["--staging_location=tmp"], "--staging_location: DataflowRunner needs"),
        ("gs://b/runs", [], "--temp_location: DataflowRunner needs one"),
    ],
)
def test_dataflow_with_a_local_root_or_temp_location_is_exit_2(
    tmp_path, tiny_csv, capsys, root, extra, message
) -> None:
    cfg = _config(tmp_path, tiny_csv)
    args = ["run", str(cfg), "--json", "--only", "ingest", "--set", f"pipeline.root={root}",
            "--set", f"metadata.path={tmp_path / 'm.sqlite'}", "--runner", "DataflowRunner",
            "--beam-option=--project=p", *(f"--beam-option={e}" for e in extra)]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 2 and message in err, err


def test_s3_runs_load_the_s3_plugin_in_every_worker(tmp_path, tiny_csv) -> None:
    cfg = load(_config(tmp_path, tiny_csv), ["pipeline.root=s3://b/runs"])
    assert "--beam_plugins=beam_pipeline.io.s3_plugin" in beam_args(cfg)
    assert not any("beam_plugins" in a for a in beam_args(load(_config(tmp_path, tiny_csv))))


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


@pytest.mark.slow
def test_penguins_data_stages_on_directrunner_multi_processing(tmp_path) -> None:
    """Ingest through transform (the Beam stages before training) with DirectRunner's
    multi_processing mode, each stage's bundles in 2 worker processes: the same splits as
    in_memory (the split is a hash of the row), statistics and transformed examples of every row.
    Train, evaluate and push are left out to keep CI short (the whole pipeline took 159 s)."""
    import yaml

    from tests.object_store import penguins_config
    from tests.pipeline_fixtures import cli

    cfg = penguins_config(tmp_path)
    cfg["beam"] = {"direct_running_mode": "multi_processing", "direct_num_workers": 2}
    config = tmp_path / "penguins.yaml"
    config.write_text(yaml.safe_dump(cfg))
    code, summary, err = cli("run", str(config), "--to", "transform", "--json", timeout=900)
    assert code == 0 and summary["status"] == "completed", err[-4000:]
    assert "--direct_running_mode=multi_processing" in " ".join(beam_args(load(config)))
    store = Store(load(config))
    examples = {Path(a.uri).parent.parent.name: a for a in store.artifacts_of_type("Examples")}
    assert examples["ingest"].properties["row_counts"] == {"train": 262, "eval": 72}
    assert examples["transform"].properties["row_counts"] == {"train": 262, "eval": 72}
    [stats] = store.artifacts_of_type("ExampleStatistics")
    assert Path(stats.uri, "Split-train", "FeatureStats.pb").stat().st_size > 0
