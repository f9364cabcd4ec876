"""Shared fixtures: tiny data made on the spot, configs in tmp folders, the CLI in-process."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest_plugins = ["tests.parallel"]

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
TAXI_CSV = REPO / "data" / "chicago_taxi" / "data.csv"
PENGUINS_CSV = REPO / "data" / "penguins" / "penguins_processed.csv"

HEADER = "id,city,amount,count,note"


def tiny_rows(n: int = 20, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    cities = ["oslo", "lima", "pune", "kyiv"]
    return [
        f'{i},{rng.choice(cities)},{rng.uniform(1, 100):.2f},{rng.randint(0, 9)},"n, {i}"'
        for i in range(n)
    ]


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    """A 20-row CSV with one bad row (a non-numeric amount) at line 12."""
    rows = tiny_rows()
    rows[10] = '10,oslo,not-a-number,3,"bad"'
    path = tmp_path / "data" / "tiny.csv"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def write_config(tmp_path: Path, ingest: dict[str, Any], **sections: Any) -> Path:
    """A config in tmp_path with an in-folder root and SQLite store; sections override defaults."""
    cfg: dict[str, Any] = {
        "pipeline": {"name": "t", "root": str(tmp_path / "root")},
        "metadata": {"backend": "sqlite"},
        "ingest": {"columns": {}, **ingest},
    }
    cfg.update(sections)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    """Run the CLI in-process; returns (exit code, the --json object or {}, stderr)."""
    from beam_pipeline.cli import main

    code = main(args)
    out, err = capsys.readouterr()
    data = json.loads(out.strip().splitlines()[-1]) if "--json" in args and out.strip() else {}
    return code, data, err


@pytest.fixture
def taxi_copy(tmp_path: Path) -> Path:
    """The bundled taxi CSV copied into tmp_path (tests may edit it)."""
    dest = tmp_path / "taxi" / "data.csv"
    dest.parent.mkdir(parents=True)
    shutil.copy(TAXI_CSV, dest)
    return dest


@pytest.fixture
def killed_at() -> Any:
    """``killed_at("KIND:STEP", "cli", *ARGS, env=...)``: the command run in a child process that
    SIGKILLs itself when an execution of KIND reaches STEP (`tests.crash`); its CompletedProcess."""
    import subprocess
    import sys

    def run(point: str, *args: str, env: dict[str, str] | None = None) -> Any:
        return subprocess.run(
            [sys.executable, "-m", "tests.crash", point, *args],
            cwd=REPO,
            env=env or dict(os.environ),
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """moto's S3 server on 127.0.0.1 and a free port, shared by the session; always stopped."""
    from tests.object_store import start_s3

    server = start_s3(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_runs(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The penguins pipeline run twice (the second fully cached) with data, root and serving
    folder on the session's S3 server; shared by the object-store and portable-runner tests."""
    from tests.object_store import cli, penguins_on_s3

    base = tmp_path_factory.mktemp("s3-penguins")
    config = penguins_on_s3(s3_server, base, "penguins")
    args = ("run", str(config), "--json", *(f"--beam-option={o}" for o in s3_server.beam_options))
    runs = []
    for _ in range(2):
        code, summary, err = cli(s3_server, *args)
        assert code == 0 and summary.get("status") == "completed", err[-4000:]
        runs.append(summary)
    return {"config": config, "runs": runs, "args": args}
