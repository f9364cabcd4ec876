"""The command line as people use it: a light core, errors, machine output (issue 10)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from beam_pipeline.core.orchestrator import resume_command
from tests.conftest import REPO, run_cli, write_config

HEAVY = ("tensorflow", "tensorflow_data_validation", "tensorflow_transform", "apache_beam")


def _cfg(tmp_path: Path, source: Path) -> Path:
    return write_config(tmp_path, {"source": str(source), "max_rejected_fraction": 0.2})


def test_read_only_commands_import_no_heavy_library(tmp_path, tiny_csv) -> None:
    cfg = _cfg(tmp_path, tiny_csv)
    code = f"""
import sys
from beam_pipeline.cli import main
codes = [main(a) for a in (["runs", {str(cfg)!r}], ["models", {str(cfg)!r}],
         ["runs", {str(cfg)!r}, "--json"], ["lineage", {str(cfg)!r}, "--model", "1"])]
print(codes, sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[0, 0, 0, 2] []", proc.stdout


def test_a_wrong_command_creates_no_store(tmp_path, tiny_csv, capsys) -> None:
    cfg = _cfg(tmp_path, tiny_csv)
    code, _, err = run_cli(["run", str(cfg), "--only", "trian"], capsys)
    assert code == 2 and "--only: unknown stage 'trian'" in err
    assert run_cli(["runs", str(cfg), "--json"], capsys)[0] == 0
    assert run_cli(["models", str(cfg)], capsys)[0] == 0
    code, _, err = run_cli(["approve", str(cfg), "--model", "1"], capsys)
    assert code == 2 and "no model version 1" in err
    assert not (tmp_path / "root").exists(), "no pipeline root, no metadata store"


def test_config_sections_need_no_stage_module() -> None:
    from beam_pipeline.sections import all_sections
    from beam_pipeline.stages import STAGES

    sections = all_sections()
    for stage in STAGES.values():
        assert sections[stage.section_name] is stage.section


# ---------------------------------------------------------------------------------------------
# Resume and errors (item 10), machine output (item 11), small hints (items 6 and 12)


def test_resume_is_the_users_own_command_line_plus_from(tmp_path, tiny_csv, capsys) -> None:
    # max_rejected_fraction 0: the bad row fails ingest.
    cfg = write_config(tmp_path, {"source": str(tiny_csv), "columns": {"amount": "float"}})
    args = [
        "run",
        str(cfg),
        "--to",
        "ingest",
        "--set",
        "ingest.batch_size=100",
        "--runner",
        "DirectRunner",
        "--beam-option=--direct_num_workers=1",
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "stage 'ingest' failed" in err
    expected = shlex.join(["beam-pipeline", *args, "--from", "ingest"])
    assert f"resume with: {expected}" in err
    assert resume_command("beam-pipeline run c.yaml --from=train -v", "tune") == (
        "beam-pipeline run c.yaml -v --from tune"
    )
    assert resume_command("beam-pipeline run c.yaml --only push", "push").endswith("--only push")


def test_any_error_is_one_line_and_json_still_answers(tmp_path, capsys) -> None:
    cfg = tmp_path / "p.yaml"
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    cfg.write_text("pipeline: {name: t, root: /proc/no-such-folder/r}\ningest: {source: d.csv}\n")
    code, data, err = run_cli(["run", str(cfg), "--to", "ingest", "--json"], capsys)
    assert code == 1 and "/proc/no-such-folder" in data["error"] and data["exit_code"] == 1
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    code, data, err = run_cli(["runs", str(tmp_path / "missing.yaml"), "--json"], capsys)
    assert code == 2 and "config file not found" in data["error"]


def test_a_closed_stdout_is_not_a_traceback(tmp_path, tiny_csv) -> None:
    cfg = write_config(tmp_path, {"source": str(tiny_csv)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "beam_pipeline.cli", "runs", str(cfg), "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # `| head` that has read enough
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_user_errors_are_exit_2_and_name_the_flag(tmp_path, tiny_csv, capsys) -> None:
    cfg = write_config(tmp_path, {"source": str(tiny_csv)})
    code, _, err = run_cli(
        ["score", str(cfg), "--input", str(tmp_path / "none-*.csv"), "--output", "o"], capsys
    )
    assert code == 2 and "--input: no files match" in err
    code, _, err = run_cli(["rollback", str(cfg), "--to", "999"], capsys)
    assert code == 2 and "--to: no model version 999" in err
    for section in ("train", "tune"):
        code, _, err = run_cli(
            ["runs", str(cfg), "--set", f"{section}.early_stopping_patience=-1"], capsys
        )
        assert code == 2 and f"{section}.early_stopping_patience must be >= 0" in err


def test_every_flag_has_help_and_help_lists_stages_and_exit_codes() -> None:
    import argparse

    from beam_pipeline.cli import _complete_help, _parser

    parser = _complete_help(_parser())
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"{name} {action.option_strings} has no help"
        flags = {o for a in command._actions for o in a.option_strings}
        if name not in ("serve", "ui", "tune-worker", "train-worker"):  # servers: HTTP
            assert "--json" in flags, f"{name} has no --json"
    text = " ".join(sub.choices["run"].format_help().split())
    assert "exit codes:" in text and "ingest, statistics, schema, validate" in text


def test_relative_defaults_resolve_against_the_config_folder(tmp_path, monkeypatch) -> None:
    from beam_pipeline.core.config import load

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "p.yaml").write_text("pipeline: {name: t}\ningest: {source: d.csv}\n")
    monkeypatch.chdir(tmp_path)
    config = load("project/p.yaml")
    assert config.root == folder.resolve() / "runs"
    assert config.section("push").serving_dir == str(folder.resolve() / "serving")


def test_awaiting_approval_names_the_config_file() -> None:
    from beam_pipeline.core.artifacts import Artifact
    from beam_pipeline.stages import push

    blessing = Artifact("ModelBlessing", "/b", {"blessed": True, "require_approval": True})
    reason = push.decide(blessing, None, None, False, "configs/taxi.yaml")
    assert "approve configs/taxi.yaml --model" in reason and "CONFIG" not in reason
