"""Closing the loop: labelled logged traffic becomes a new span, and the pipeline runs on it.

1. A ``retrain_span`` execution of the one executor (`core.executor`) copies the report's
   labelled rows (``labelled/rows-*.csv``: the logged raw features plus the label column,
   written by the monitor job) into ``{span_dir}/span-{N}/data.csv`` (N: one more than the
   highest span there), with ``request_ids.txt`` beside it: staged, renamed into place, and
   recorded (the MonitoringReport in; the ``DataSpan`` and the drift acknowledgement out) as the
   commit point. A span holding the same rows is reused, never duplicated; a writer killed
   before its record leaves nothing the next one does not remove.
2. Ingest links a DataSpan whose folder holds its files as an input, so ``lineage --model N+1``
   walks back to the report and, through it, to the served requests.
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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from beam_pipeline.core.artifacts import Artifact, file_digest, monitor_dir, span_path
from beam_pipeline.core.comparators import ACK_TYPE
from beam_pipeline.core.errors import PipelineError
from beam_pipeline.core.executor import Execution, Executor
from beam_pipeline.io import filesystem

log = logging.getLogger(__name__)

SPAN_EXECUTION = "retrain_span"
LOCK_FILE = "retrain.lock"


class Busy(PipelineError):
    """Another monitor holds the retraining lock."""

    exit_code = 1


@contextlib.contextmanager
def retrain_lock(root: str | Path) -> Iterator[Path]:
    """Hold ``{root}/monitor/retrain.lock`` exclusively (never waits: raises `Busy`)."""
    path = monitor_dir(root) / LOCK_FILE
    filesystem.makedirs(path.parent)
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
        Path(section.span_dir) if section.span_dir else monitor_dir(config.pipeline.root) / "spans"
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


def write_span(report_dir: Path, out: Path) -> int:
    """Write the report's labelled rows as a span's files into ``out``; returns the rows."""
    header, rows, ids = labelled_rows(report_dir)
    filesystem.write_text(out / "data.csv", "".join(f"{line}\n" for line in [header, *rows]))
    filesystem.write_text(out / "request_ids.txt", "".join(i + "\n" for i in ids))
    return len(rows)


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


def _ack(
    ack_props: dict[str, Any], report_id: int, span: int, digest: str, folder: Path
) -> Artifact:
    return Artifact(
        ACK_TYPE,
        str(folder),
        {**ack_props, "span": span, "content_digest": digest},
        fingerprint=f"{report_id}:{digest}",
    )


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
        folder = span_dir(config)
        data = existing_span(store, digest, folder)
        reused = data is not None
        props = {"time": time.time(), "window": body["window"], "reused": reused}
        if data is not None:  # the same rows are a span already: only the acknowledgement
            span, rows = int(data.properties["span"]), int(data.properties["rows"])
            ack = _ack(ack_props, report.id, span, digest, data.path)
            store.record_execution(
                SPAN_EXECUTION,
                {**props, "span": span, "rows": rows},
                {"report": report, "span": data},
                {"acknowledged": ack},
            )
        else:
            executor = Executor(store)
            executor.abandon_dead(
                SPAN_EXECUTION
            )  # a killed writer's span-N goes before N is chosen
            span = next_span(folder)
            facts = {
                "window": body["window"],
                "report_id": report.id,
                "label_column": body["feedback"]["label_column"],
                "content_digest": digest,
            }

            def write(execution: Execution) -> dict[str, Artifact]:
                out, final = execution.output_dir, execution.destination
                n = write_span(report_dir, out)
                execution.properties.update(span=span, rows=n)
                files = [str(final / "data.csv")]
                span_art = Artifact(
                    "DataSpan",
                    str(out),
                    {
                        "span": span,
                        "rows": n,
                        "files": files,
                        "request_ids": str(final / "request_ids.txt"),
                        **facts,
                    },
                    fingerprint=file_digest([str(out / "data.csv")]),
                )
                return {
                    "span": span_art,
                    "acknowledged": _ack(ack_props, report.id, span, digest, out),
                }

            done = executor.execute(
                SPAN_EXECUTION,
                write,
                destination=span_path(folder, span),
                inputs={"report": report},
                properties=props,
            )
            data, ack = done.outputs["span"], done.outputs["acknowledged"]
            rows = int(data.properties["rows"])
        folder = data.path
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
