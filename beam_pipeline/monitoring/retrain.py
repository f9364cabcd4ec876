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
import hashlib
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
from beam_pipeline.core.comparators import ACK_TYPE
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


def labelled_rows(report_dir: Path) -> tuple[str, list[str], list[str]]:
    """The report's labelled rows (header, rows sorted, request ids sorted): sorted, so that the
    same traffic always makes the same bytes whatever order the job wrote its shards in."""
    header, rows, ids = "", [], []
    for part in sorted((report_dir / "labelled").glob("rows*.csv")):
        with open(part) as f:
            first = f.readline().rstrip("\n")
            header = header or first
            rows += [line.rstrip("\n") for line in f if line.strip()]
    for part in sorted((report_dir / "labelled").glob("request_ids*.txt")):
        ids += [line for line in part.read_text().splitlines() if line]
    return header, sorted(rows), sorted(ids)


def span_digest(header: str, rows: list[str]) -> str:
    """The bytes of ``data.csv`` a span of these rows holds, hashed (sha256)."""
    h = hashlib.sha256()
    h.update((header + "\n").encode())
    for row in rows:
        h.update((row + "\n").encode())
    return h.hexdigest()


def write_span(report_dir: Path, folder: Path) -> tuple[int, Path, int]:
    """Copy the report's labelled rows into a new span folder (through a hidden folder renamed
    into place); (span, folder, rows)."""
    header, rows, ids = labelled_rows(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    span = next_span(folder)
    tmp = folder / f".span-{span}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with open(tmp / "data.csv", "w") as out:
            out.write(header + "\n")
            out.writelines(row + "\n" for row in rows)
        (tmp / "request_ids.txt").write_text("".join(i + "\n" for i in ids))
        final = folder / f"span-{span}"
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return span, final, len(rows)


def acknowledged(body: dict[str, Any]) -> dict[str, Any]:
    """What a retraining acknowledges: the skew and drift the report alerted on (feature, kind,
    value, threshold), so that the retraining run's validation does not stop on that drift."""
    named = [
        {k: a.get(k) for k in ("category", "feature", "kind", "value", "threshold")}
        for a in body.get("alerts", [])
        if a.get("category") in ("skew", "drift")
    ]
    return {
        "report_id": body.get("artifact"),
        "window": body.get("window"),
        "features": sorted({a["feature"] for a in named}),
        "alerts": named,
    }


def existing_span(store: Any, digest: str, folder: Path) -> Artifact | None:
    """A LIVE DataSpan under ``folder`` holding exactly these bytes, its files still there."""
    for art in store.artifacts_of_type("DataSpan"):
        if (
            art.properties.get("content_digest") == digest
            and Path(art.uri).parent == folder
            and (Path(art.uri) / "data.csv").is_file()
        ):
            return art
    return None


def unrecorded_span(store: Any, digest: str, folder: Path) -> tuple[int, Path] | None:
    """A ``span-N`` folder holding exactly these bytes that no DataSpan records (a monitor killed
    between writing it and recording it): (N, folder)."""
    recorded = {Path(a.uri) for a in store.artifacts_of_type("DataSpan", live_only=False)}
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = re.fullmatch(r"span-(\d+)", p.name)
        if m and p not in recorded and (p / "data.csv").is_file():
            if hashlib.sha256((p / "data.csv").read_bytes()).hexdigest() == digest:
                return int(m.group(1)), p
    return None


def retrain(
    config: Any,
    body: dict[str, Any],
    run_pipeline: Callable[[list[str]], Any],
) -> dict[str, Any]:
    """Make a span of the report's labelled rows (or reuse the span that already holds exactly
    those rows), acknowledge the report's drift in ML Metadata, and run the pipeline on it.

    ``run_pipeline(overrides)`` runs the whole pipeline with those ``--set`` overrides through the
    orchestrator and returns its `RunResult` (the CLI passes one; the monitoring package never
    imports the stages). ``retrained`` is true only when the run trained a model version.
    """
    from beam_pipeline.core.metadata import Store

    section = config.stages["monitor"]
    labelled = int(body["traffic"]["labelled"])
    if labelled < section.retrain.min_rows:
        return {
            "retrained": False,
            "pushed": False,
            "reason": f"{labelled} labelled rows in the window < monitor.retrain.min_rows "
            f"{section.retrain.min_rows}",
        }
    store = Store(config)
    with retrain_lock(config.pipeline.root):
        report_dir = Path(body["report_dir"])
        header, sorted_rows, _ = labelled_rows(report_dir)
        digest = span_digest(header, sorted_rows)
        [report] = store.artifacts([body["artifact"]])
        ack_props = acknowledged(body)
        data = existing_span(store, digest, span_dir(config))
        reused = data is not None
        if data is None:
            orphan = unrecorded_span(store, digest, span_dir(config))
            if orphan is not None:
                span, folder = orphan
                rows = len(sorted_rows)
            else:
                span, folder, rows = write_span(report_dir, span_dir(config))
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
                    "content_digest": digest,
                },
                fingerprint=file_digest([str(folder / "data.csv")]),
            )
        span, folder, rows = int(data.properties["span"]), data.path, int(data.properties["rows"])
        ack = Artifact(
            ACK_TYPE,
            str(folder),
            {**ack_props, "span": span, "content_digest": digest},
            fingerprint=f"{report.id}:{digest}",
        )
        inputs = {"report": report, **({"span": data} if reused else {})}
        outputs = {"acknowledged": ack, **({} if reused else {"span": data})}
        store.record_execution(
            SPAN_EXECUTION,
            {
                "time": time.time(),
                "span": span,
                "rows": rows,
                "window": body["window"],
                "reused": reused,
            },
            inputs,
            outputs,
        )
        log.info(
            "monitor: %s span %d (%s labelled rows) → %s; drift acknowledged for %s "
            "(MonitoringReport #%s); running the pipeline",
            "reusing" if reused else "wrote",
            span,
            rows,
            folder,
            ", ".join(ack_props["features"]) or "no feature",
            report.id,
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
    status = summary.get("status")
    trained = status == "completed" and summary.get("model_version") is not None
    pushed = summary.get("pushed_version") is not None
    if status != "completed":
        reason = f"the retraining run {status}: {summary.get('error')}"
    elif pushed:
        reason = f"model v{summary['model_version']} trained, blessed and pushed"
    else:
        reason = f"model v{summary.get('model_version')} trained, not pushed: " + str(
            summary.get("push_reason")
        )
    return {
        "retrained": trained,
        "pushed": pushed,
        "reason": reason,
        "span": span,
        "span_reused": reused,
        "span_dir": str(folder),
        "rows": rows,
        "data_span": data.id,
        "acknowledged": {"id": ack.id, **ack_props},
        "run_id": summary.get("run_id"),
        "status": status,
        "model_version": summary.get("model_version") if trained else None,
        "blessed": summary.get("blessed"),
        "pushed_version": summary.get("pushed_version"),
        "push_reason": summary.get("push_reason"),
        "anomalies": summary.get("anomalies") or [],
        "error": summary.get("error"),
        "exit_code": result.exit_code,
        "overrides": overrides,
    }
