"""One trained taxi pipeline per test session, shared by the evaluate/push/registry/scoring tests.

Three runs of ``beam-pipeline run`` (each in a child process: tf.Transform may crash at interpreter
exit) on the bundled taxi data with a short training budget:

1. the normal budget: the first model, judged on absolute bounds, blessed and pushed as version 1;
2. ``--set train.epochs=1 --set train.steps_per_epoch=1``: a worse model, evaluated against
   version 1, not blessed, not pushed;
3. ``--set train.seed=7``: the normal budget again (a new model, version 3), compared to version 1.

Tests that change the registry (reviews, rollbacks) work on `copy_pipeline`, a copy of the root
and its SQLite store with its own serving folder.

`penguins_run` runs a bundled penguins config (``penguins``: the 3-class species model with its
curated schema; ``penguins_mass``: the regression example) once per session through push, with
a short training budget.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TAXI_CSV = ROOT / "data" / "chicago_taxi" / "data.csv"

KEEP_ENV = "BEAM_PIPELINE_TEST_PIPELINE"  # a folder that keeps the pipeline between sessions
SHARED_ENV = "BEAM_PIPELINE_TEST_SHARED"  # the session's folder under pytest-xdist (parallel.py)
WORSE = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=1"]
RESEEDED = ["--set", "train.seed=7"]


def taxi_config(base: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "pipeline": {"name": "taxi", "root": str(base / "root")},
        "metadata": {"backend": "sqlite"},
        "ingest": {
            "source": str(TAXI_CSV),
            "columns": {
                "dropoff_census_tract": "int",
                "payment_type": "string",
                "company": "string",
            },
            "drop": ["pickup_census_tract"],
            "max_rejected_fraction": 0.01,
        },
        "schema": {"min_domain_mass": 0.99},
        "validation": {"fail_on": ["schema"]},
        "transform": {"module": str(ROOT / "transforms" / "taxi.py")},
        "tune": {"enabled": False},
        "train": {
            "module": str(ROOT / "models" / "taxi.py"),
            "epochs": 2,
            "steps_per_epoch": 40,
            "batch_size": 256,
        },
        "evaluate": {
            "slices": ["payment_type", ["payment_type", "trip_start_hour"], "fare"],
            "bucket_boundaries": {"fare": [5, 10, 20]},
            "thresholds": {
                "auc": {"lower": 0.7, "min_change_abs": -0.02},
                "log_loss": {"upper": 0.6},
            },
            "slice_thresholds": [
                {
                    "slice": {"payment_type": "Credit Card"},
                    "thresholds": {"accuracy": {"lower": 0.6}},
                },
            ],
        },
        "push": {"serving_dir": str(base / "serving")},
    }
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def cli(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> tuple[int, Any, str]:
    """``beam-pipeline ARGS`` in a child process; (exit code, the --json output or {}, stderr).
    ``env``: extra environment variables (an object store's endpoint, say)."""
    proc = subprocess.run(
        [sys.executable, "-m", "beam_pipeline.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )
    out = proc.stdout.strip().splitlines()
    data = json.loads(out[-1]) if "--json" in args and out else {}
    return proc.returncode, data, proc.stderr


@functools.cache
def taxi_runs() -> dict[str, Any]:
    """The three runs (see the module doc); their summaries, the config and folders."""
    # Developing: build once into KEEP_ENV's folder, then reuse it. Under pytest-xdist the
    # workers share one build in the session's folder (tests/parallel.py), under a file lock.
    base, kept = _build_folder("taxi")
    config = base / "taxi.yaml"
    done = base / "runs.json"
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if kept and done.is_file():
            runs = json.loads(done.read_text())
        else:
            config.write_text(yaml.safe_dump(taxi_config(base)))
            runs = []
            for extra in ([], WORSE, RESEEDED):
                code, summary, err = cli("run", str(config), "--json", *extra)
                assert code == 0 and summary.get("status") == "completed", err[-4000:]
                runs.append(summary)
            done.write_text(json.dumps(runs))
    return {
        "base": base,
        "config": config,
        "root": base / "root",
        "serving": base / "serving",
        "runs": runs,
    }


def _build_folder(name: str) -> tuple[Path, bool]:
    """(the folder a session-wide build lives in, whether it outlives this process)."""
    shared = os.environ.get(SHARED_ENV)
    kept = os.environ.get(KEEP_ENV)
    folder = str(Path(kept) / name) if kept and name != "taxi" else kept
    folder = folder or (shared and str(Path(shared) / name))
    if folder:
        base = Path(folder)
        base.mkdir(parents=True, exist_ok=True)
        return base, True
    base = Path(tempfile.mkdtemp(prefix=f"pipeline-{name}-"))
    atexit.register(shutil.rmtree, base, True)
    return base, False


# A short budget per bundled penguins config (its own settings otherwise).
PENGUINS_BUDGET: dict[str, dict[str, Any]] = {
    "penguins": {
        "tune": {"enabled": False},
        "train": {"epochs": 25, "early_stopping_patience": 0},
    },
    "penguins_mass": {"train": {"epochs": 25}},  # the README's figure is from the config's 60
}


@functools.cache
def penguins_run(name: str) -> dict[str, Any]:
    """``configs/{name}.yaml`` run through push on the bundled data (its curated schema, its
    transform and model modules) with `PENGUINS_BUDGET`; its summary, config and folders."""
    base, kept = _build_folder(name)
    config = base / f"{name}.yaml"
    done = base / "run.json"
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if kept and done.is_file():
            summary = json.loads(done.read_text())
        else:
            cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
            cfg["pipeline"]["root"] = str(base / "root")
            cfg["push"]["serving_dir"] = str(base / "serving")
            for section, key in (
                ("ingest", "source"),
                ("transform", "module"),
                ("train", "module"),
            ):
                cfg[section][key] = str((ROOT / "configs" / cfg[section][key]).resolve())
            cfg["schema"]["path"] = str(ROOT / "configs" / cfg["schema"]["path"])
            for section, values in PENGUINS_BUDGET[name].items():
                cfg[section] = {**cfg.get(section, {}), **values}
            config.write_text(yaml.safe_dump(cfg))
            code, summary, err = cli("run", str(config), "--json")
            assert code == 0 and summary.get("status") == "completed", err[-4000:]
            done.write_text(json.dumps(summary))
    return {
        "base": base,
        "config": config,
        "root": base / "root",
        "serving": base / "serving" / name,
        "summary": summary,
    }


def copy_pipeline(dest: Path, **overrides: Any) -> Path:
    """A copy of the shared pipeline's root and store with its own serving folder; the config."""
    shared = taxi_runs()
    shutil.copytree(shared["root"], dest / "root", symlinks=True)
    if shared["serving"].exists():
        shutil.copytree(shared["serving"], dest / "serving")
    config = dest / "taxi.yaml"
    config.write_text(yaml.safe_dump(taxi_config(dest, **overrides)))
    return config


def stage_output(summary: dict[str, Any], stage: str, key: str) -> Path:
    return Path(summary["stages"][stage]["outputs"][key]["uri"])


def json_output(args: list[str], capsys: Any) -> Any:
    """The CLI in-process; its whole stdout parsed as one (possibly indented) JSON document."""
    from beam_pipeline.cli import main

    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)
