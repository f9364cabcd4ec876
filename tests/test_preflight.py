"""The whole config is checked before the first stage runs (issue 20, item 2)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from beam_pipeline.core import preflight
from beam_pipeline.core.config import load
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.core.stage_sections import STAGE_ORDER
from tests.conftest import REPO, run_cli, write_config


def _problems(config_file: Path, overrides: list[str] = (), stages=STAGE_ORDER, beam=()) -> str:
    with pytest.raises(ConfigError) as info:
        preflight.check(load(config_file, list(overrides)), list(stages), list(beam))
    return str(info.value)


@pytest.mark.parametrize("name", ["taxi", "penguins", "penguins_mass"])
def test_the_bundled_configs_pass(name: str) -> None:
    preflight.check(load(REPO / "configs" / f"{name}.yaml"), STAGE_ORDER, [])


def test_a_minimal_config_fails_at_once_naming_file_key_and_example(
    tmp_path: Path, tiny_csv: Path, capsys
) -> None:
    """The issue's case: name + source ran four stages, then failed after 10 s in transform."""
    config = write_config(tmp_path, {"source": str(tiny_csv), "max_rejected_fraction": 0.1})
    started = time.monotonic()
    code, out, err = run_cli(["run", str(config), "--json"], capsys)
    assert code == 2, err
    assert time.monotonic() - started < 10
    message = out["error"]
    assert message.startswith(f"{config}: 2 problems found before any stage ran")
    assert "- transform.module: a user module is required" in message
    assert "module: ../transforms/taxi.py" in message, "an example to copy"
    assert "beam-pipeline init NAME --data FILE --label COLUMN" in message
    assert "- train.module: a user module is required" in message
    assert not (tmp_path / "root" / "ingest").exists(), "no stage ran"
    # The stages that need no module run as before.
    assert run_cli(["run", str(config), "--to", "ingest", "--json"], capsys)[0] == 0


def test_user_modules_must_import_and_define_what_stages_call(
    tmp_path: Path, tiny_csv: Path
) -> None:
    transform = tmp_path / "t.py"
    transform.write_text("RAW_LABEL_KEYS = 'amount'\ndef preprocess(inputs):\n    return inputs\n")
    model = tmp_path / "m.py"
    model.write_text("def build_model(hp):\n    return None\n")
    config = write_config(
        tmp_path,
        {"source": str(tiny_csv)},
        transform={"module": str(transform)},
        train={"module": str(model)},
    )
    message = _problems(config)
    assert "4 problems" in message
    assert f"transform.module: {transform} must define preprocessing_fn(inputs)" in message
    assert "RAW_LABEL_KEYS must be a tuple of column names" in message
    assert f"train.module: {model} must define LABEL_KEY" in message
    assert "build_model must take 2 argument(s)" in message

    model.write_text("import no_such_package\n")
    message = _problems(config, stages=["train"])
    assert "train.module: importing" in message and "No module named 'no_such_package'" in message


def test_column_names_paths_and_runner_options(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(
        tmp_path,
        {"source": str(tiny_csv), "drop": ["notes"]},
        evaluate={"slices": ["citty", ["city", "count"]], "bucket_boundaries": {"amont": [1]}},
        schema={"path": str(tmp_path / "missing.pbtxt")},
    )
    message = _problems(config, stages=["ingest", "schema", "evaluate"])
    assert "ingest.drop[0]: no column 'notes'" in message
    assert "evaluate.slices[0]: no column 'citty'" in message and "did you mean 'city'?" in message
    assert "evaluate.bucket_boundaries.amont: no column 'amont'" in message
    assert "schema.path: curated schema file not found" in message
    assert "evaluate.slices[1]" not in message

    message = _problems(config, ["beam.runner=DirektRunner"], stages=["ingest"])
    assert "beam.runner: unknown Beam runner 'DirektRunner'" in message
    assert "runner: DirectRunner" in message
    message = _problems(config, ["beam.options=[--direct_num_workerz=2]"], stages=["ingest"])
    assert "beam.options: --direct_num_workerz: not a Beam pipeline option" in message
    message = _problems(config, stages=["ingest"], beam=["--direct_num_workers=two"])
    assert "beam.options: argument --direct_num_workers: invalid int value: 'two'" in message
    # Runner options Beam knows pass, the portable runner's and Flink's included.
    flags = ["--runner=PortableRunner", "--job_endpoint=embed", "--flink_master=h:1"]
    fixed = ["schema.path=null", "evaluate.slices=[city]", "ingest.drop=[note]"]
    preflight.check(load(config, fixed), ["ingest"], flags)

    gone = write_config(tmp_path, {"source": str(tmp_path / "nothing-*.csv")})
    assert "ingest.source: no file matches" in _problems(gone, stages=["ingest"])
