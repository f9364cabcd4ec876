"""Closing the loop: labelled logged traffic becomes a new span, and the pipeline runs on it.

1. The report's labelled rows (``labelled/rows-*.csv``: the logged raw features plus the label
   column, written by the monitor job) are copied into ``{span_dir}/span-{N}/data.csv`` (N: one
   more than the highest span there), with ``request_ids.txt`` beside it, through a hidden folder
   renamed into place.
2. A ``retrain_span`` execution records the MonitoringReport as input and a ``DataSpan`` artifact
   (the folder) as output; ingest links a DataSpan whose folder holds its files as an input, so
   ``lineage --model N+1`` walks back to the report and, through it, to the served requests.
3. The orchestrator runs the pipeline with ``ingest.source={span_dir}/span-{SPAN}/data.csv``,
   ``ingest.span=N``, ``ingest.spans=K`` (``monitor.retrain.spans``) and the overrides of
   ``monitor.retrain.overrides``: validate, transform, train, evaluate (against the model being
   served, the latest blessed one, on the new data's eval split), push if blessed. A server
   watching the serving folder picks the new version up by itself.

Only one retraining runs at a time: `retrain_lock` is an exclusive ``flock`` on
``{pipeline.root}/monitor/retrain.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from beam_pipeline.core.artifacts import Artifact, file_digest
from beam_pipeline.core.errors import PipelineError

log = logging.getLogger(__name__)

SPAN_EXECUTION = "retrain_span"
LOCK_FILE = "retrain.lock"


class Busy(PipelineError):
    """Another monitor holds the retraining lock."""

    exit_code = 1


@contextlib.contextmanager
def retrain_lock(root: str | Path) -> Iterator[Path]:
    """Hold ``{root}/monitor/retrain.lock`` exclusively (never waits: raises `Busy`)."""
    path = Path(root) / "monitor" / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(path).read_text().strip() or "?"
            raise Busy(f"another monitor (pid {holder}) is retraining: {path} is locked") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def span_dir(config: Any) -> Path:
    section = config.stages["monitor"].retrain
    return (
        Path(section.span_dir)
        if section.span_dir
        else Path(config.pipeline.root) / "monitor" / "spans"
    )


def next_span(folder: Path) -> int:
    numbers = [
        int(m.group(1))
        for p in (folder.iterdir() if folder.is_dir() else [])
        if (m := re.fullmatch(r"span-(\d+)", p.name))
    ]
    return max(numbers, default=0) + 1


def write_span(report_dir: Path, folder: Path) -> tuple[int, Path, int]:
    """Copy the report's labelled rows into a new span folder; (span, folder, rows)."""
    parts = sorted((report_dir / "labelled").glob("rows*.csv"))
    ids = sorted((report_dir / "labelled").glob("request_ids*.txt"))
    folder.mkdir(parents=True, exist_ok=True)
    span = next_span(folder)
    tmp = folder / f".span-{span}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    rows = 0
    with open(tmp / "data.csv", "w") as out:
        header_written = False
        for part in parts:
            with open(part) as f:
                header = f.readline()
                if not header_written:
                    out.write(header)
                    header_written = True
                for line in f:
                    if line.strip():
                        out.write(line if line.endswith("\n") else line + "\n")
                        rows += 1
    with open(tmp / "request_ids.txt", "w") as out:
        for part in ids:
            out.write(part.read_text())
    final = folder / f"span-{span}"
    os.replace(tmp, final)
    return span, final, rows


def retrain(
    config: Any,
    body: dict[str, Any],
    run_pipeline: Callable[[list[str]], Any],
) -> dict[str, Any]:
    """Make a span of the report's labelled rows and run the pipeline on it.

    ``run_pipeline(overrides)`` runs the whole pipeline with those ``--set`` overrides through the
    orchestrator and returns its `RunResult` (the CLI passes one; the monitoring package never
    imports the stages).
    """
    from beam_pipeline.core.metadata import Store

    section = config.stages["monitor"]
    labelled = int(body["traffic"]["labelled"])
    if labelled < section.retrain.min_rows:
        return {
            "retrained": False,
            "reason": f"{labelled} labelled rows in the window < monitor.retrain.min_rows "
            f"{section.retrain.min_rows}",
        }
    store = Store(config)
    with retrain_lock(config.pipeline.root):
        span, folder, rows = write_span(Path(body["report_dir"]), span_dir(config))
        [report] = store.artifacts([body["artifact"]])
        data = Artifact(
            "DataSpan",
            str(folder),
            {
                "span": span,
                "rows": rows,
                "files": [str(folder / "data.csv")],
                "request_ids": str(folder / "request_ids.txt"),
                "window": body["window"],
                "report_id": report.id,
                "label_column": body["feedback"]["label_column"],
            },
            fingerprint=file_digest([str(folder / "data.csv")]),
        )
        store.record_execution(
            SPAN_EXECUTION,
            {"time": time.time(), "span": span, "rows": rows, "window": body["window"]},
            {"report": report},
            {"span": data},
        )
        log.info(
            "monitor: span %d (%s labelled rows) → %s; running the pipeline", span, rows, folder
        )
        overrides = [
            f"ingest.source={span_dir(config)}/span-{{SPAN}}/data.csv",
            "ingest.format=csv",
            f"ingest.span={span}",
            f"ingest.spans={section.retrain.spans}",
            "ingest.drop=[]",
            "ingest.columns=" + json.dumps(body["column_types"]),  # JSON is YAML
            *section.retrain.overrides,
        ]
        result = run_pipeline(overrides)
    summary = result.to_json()
    return {
        "retrained": True,
        "span": span,
        "span_dir": str(folder),
        "rows": rows,
        "data_span": data.id,
        "run_id": summary.get("run_id"),
        "status": summary.get("status"),
        "model_version": summary.get("model_version"),
        "blessed": summary.get("blessed"),
        "pushed_version": summary.get("pushed_version"),
        "push_reason": summary.get("push_reason"),
        "error": summary.get("error"),
        "exit_code": result.exit_code,
        "overrides": overrides,
    }
