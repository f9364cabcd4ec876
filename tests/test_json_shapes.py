"""One JSON shape family (issue 20, item 6): an object per command, one time format, the same
names for the same things, no internal fields, every command's shape documented in docs/cli.md.

The commands that need a trained model (models with rows, approve, rollback, score, monitor) are
checked in their own tests on these shapes; here the cheap ones run on an ingested tiny pipeline.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from beam_pipeline.cli import _parser
from beam_pipeline.core.jsonout import INTERNAL_RUN_FIELDS, TIME_KEYS, dumps, machine
from tests.conftest import REPO, run_cli, write_config

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?\+00:00$")
LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d")


def times(value: Any, key: str = "") -> list[str]:
    """Every time in a JSON value: under a time key, or a string that starts like one."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in times(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in times(v)]
    if isinstance(value, str) and (key in TIME_KEYS or LOOKS_LIKE_TIME.match(value)):
        return [value]
    if key in TIME_KEYS and value is not None:
        return [repr(value)]  # a number where a time belongs
    return []


def test_every_time_is_in_the_one_format() -> None:
    body = {
        "started": 1_764_196_211.5,
        "window": {"since": "2026-11-26T22:30:11.123Z", "until": "2026-11-26T22:30:12Z"},
        "nested": [{"time": 1_764_196_211}, {"created": None}],
        "note": "2026 was a year",
    }
    out = machine(body)
    assert out["started"] == "2025-11-26T22:30:11+00:00"
    assert out["window"] == {
        "since": "2026-11-26T22:30:11.123+00:00",
        "until": "2026-11-26T22:30:12+00:00",
    }
    assert all(TIME.match(t) for t in times(out)), times(out)
    assert times({"started": 12.5}) == ["12.5"]  # the check itself can fail
    assert dumps({"blessed": True}) == '{"blessed": true}'


def test_cheap_commands_print_one_object(tmp_path: Path, tiny_csv: Path, capsys) -> None:
    cfg = str(write_config(tmp_path, {"source": str(tiny_csv), "max_rejected_fraction": 0.1}))
    code, run, err = run_cli(["run", cfg, "--to", "ingest", "--json"], capsys)
    assert code == 0, err
    examples = run["stages"]["ingest"]["outputs"]["examples"]["id"]
    outputs = {
        "run": run,
        "runs": run_cli(["runs", cfg, "--json"], capsys)[1],
        "models": run_cli(["models", cfg, "--json"], capsys)[1],
        "lineage": run_cli(["lineage", cfg, "--artifact", str(examples), "--json"], capsys)[1],
        "doctor": run_cli(["doctor", cfg, "--dry-run", "--json"], capsys)[1],
        "error": run_cli(["runs", str(tmp_path / "nope.yaml"), "--json"], capsys)[1],
    }
    for name, out in outputs.items():
        assert isinstance(out, dict) and out, name
        assert all(TIME.match(t) for t in times(out)), (name, times(out))
    [listed] = outputs["runs"]["runs"]
    assert listed["run_id"] == run["run_id"] and listed["stages"]["ingest"]["status"] == "completed"
    assert not INTERNAL_RUN_FIELDS & set(listed), set(listed)
    assert TIME.match(listed["started"]) and TIME.match(listed["finished"])
    assert outputs["models"] == {"models": []}
    assert outputs["doctor"] == {"findings": [], "dry_run": True}
    assert outputs["lineage"]["artifact"]["id"] == examples
    assert outputs["error"]["exit_code"] == 2 and "nope.yaml" in outputs["error"]["error"]


def _json_commands() -> list[str]:
    parser = _parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(
        name
        for name, p in sub.choices.items()
        if any("--json" in a.option_strings for a in p._actions)
    )


def test_every_json_command_has_its_shape_documented() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    documented = set()
    for heading in re.findall(r"^### (.+)$", text, flags=re.M):
        documented |= set(re.findall(r"`([a-z-]+)`", heading))
    commands = _json_commands()
    assert "runs" in commands and "serve" not in commands
    missing = [c for c in commands if c not in documented]
    assert not missing, f"docs/cli.md has no '### `COMMAND`' JSON section for {missing}"
