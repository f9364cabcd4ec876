from __future__ import annotations

from pathlib import Path

import pytest

from beam_pipeline.core.config import load
from beam_pipeline.core.errors import ConfigError
from tests.conftest import run_cli, write_config


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = tmp_path / "sub" / "p.yaml"
    cfg.parent.mkdir()
    cfg.write_text("pipeline: {name: p, root: out}\ningest: {source: data/x.csv}\n")
    config = load(cfg)
    assert config.pipeline.root == str(tmp_path / "sub" / "out")
    assert config.section("ingest").source == str(tmp_path / "sub" / "data" / "x.csv")


def test_unknown_key_names_file_and_key_path(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv", "bogus": 1})
    with pytest.raises(ConfigError, match=r"pipeline\.yaml: unknown key 'ingest\.bogus'"):
        load(cfg)


def test_unknown_nested_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv", "split": {"ratio": {"train": 1}}})
    with pytest.raises(ConfigError, match=r"unknown key 'ingest\.split\.ratio'"):
        load(cfg)


def test_unknown_section(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv"}, trainer={"x": 1})
    with pytest.raises(ConfigError, match=r"unknown section 'trainer'"):
        load(cfg)


def test_wrong_type_names_key_expected_and_received(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv", "batch_size": "big"})
    with pytest.raises(ConfigError, match=r"ingest\.batch_size: expected int; received 'big'"):
        load(cfg)


def test_wrong_literal(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv", "format": "xls"})
    with pytest.raises(ConfigError, match=r"ingest\.format: expected one of \['csv'"):
        load(cfg)


def test_missing_required_key(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text("ingest: {source: x.csv}\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: missing required key 'pipeline'"):
        load(cfg)


def test_missing_ingest_source(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text("pipeline: {name: p}\n")
    with pytest.raises(ConfigError, match=r"missing required key 'ingest\.source'"):
        load(cfg)


def test_set_overrides_values_with_yaml_typing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv"})
    config = load(cfg, ["ingest.batch_size=128", "ingest.split.key=id", "metadata.backend=memory"])
    assert config.section("ingest").batch_size == 128
    assert config.section("ingest").split.key == "id"
    assert config.metadata.backend == "memory"


def test_set_with_wrong_type_is_rejected(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv"})
    with pytest.raises(ConfigError, match=r"ingest\.max_rejected_fraction"):
        load(cfg, ["ingest.max_rejected_fraction=2"])


def test_password_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    cfg = write_config(
        tmp_path, {"source": "x.csv"}, metadata={"backend": "mysql", "password_env": "MY_SECRET"}
    )
    monkeypatch.setenv("MY_SECRET", "s3cret")
    assert load(cfg).metadata.password() == "s3cret"


def test_cli_config_errors_exit_2(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv", "bogus": 1})
    code, _, err = run_cli(["run", str(cfg)], capsys)
    assert code == 2
    assert "unknown key 'ingest.bogus'" in err
    code, _, err = run_cli(["run", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "config file not found" in err


def test_cli_unknown_stage_in_from_exits_2(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv"})
    code, _, err = run_cli(["run", str(cfg), "--from", "nowhere"], capsys)
    assert code == 2 and "unknown stage 'nowhere'" in err


def test_cli_wrong_type_and_missing_key_exit_2(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path, {"source": "x.csv", "batch_size": "big"})
    code, _, err = run_cli(["run", str(cfg)], capsys)
    assert code == 2 and "ingest.batch_size: expected int; received 'big'" in err
    missing = tmp_path / "missing.yaml"
    missing.write_text("ingest: {source: x.csv}\n")
    code, _, err = run_cli(["run", str(missing)], capsys)
    assert code == 2 and "missing.yaml: missing required key 'pipeline'" in err
