"""``beam-pipeline monitor``: one monitoring round, from the logs to a MonitoringReport.

1. resolve the window and the model version(s) (lineage: training statistics, schema, transform
   graph, evaluation-time metrics);
2. run the job (`job.py`) over the prediction segments and score outputs in the window, joined
   with the feedback log: the Beam job, or on the DirectRunner in_memory with a local root the
   same DoFns in this process (`runners.options.runs_in_process`, `job.run_in_process`);
3. apply the rules (`rules.py`): skew against the training data, drift against the previous
   report, prediction shift against the eval split, live quality against evaluation time;
4. write ``report.json``, ``report.txt``, ``report.html``, ``FeatureStats.pb`` and
   ``rejected/`` as a ``monitor`` execution of the one executor (`core.executor`): RUNNING first,
   a staging folder renamed into place, the record (the Model versions covered, their training
   statistics and the previous report as inputs; the ``MonitoringReport`` as output) as the
   commit point, cleanup on failure, a killed monitor's leftovers removed by the next one.

An empty window (no prediction in it) publishes nothing: no segment, nothing recorded; segments
without a prediction of the window, a CANCELED execution and no folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beam_pipeline.core import registry
from beam_pipeline.core.artifacts import (
    REPORT_FILES,
    STATS_FILE,
    Artifact,
    monitor_cache,
    monitor_dir,
    rejected_dir,
)
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.core.executor import Execution, Executor
from beam_pipeline.io import filesystem
from beam_pipeline.monitoring import logs, report, rules
from beam_pipeline.monitoring.config import MonitorSection
from beam_pipeline.monitoring.job import OVERALL, MonitorJob, run_job
from beam_pipeline.monitoring.lineage import ModelInfo, model_info
from beam_pipeline.monitoring.reference import training_buckets

if TYPE_CHECKING:  # ML Metadata is imported when a round runs
    from beam_pipeline.core.config import Config
    from beam_pipeline.core.metadata import Store

log = logging.getLogger(__name__)

EXECUTION = "monitor"
REPORT_TYPE = "MonitoringReport"


def section_of(config: Any) -> MonitorSection:
    return config.stages.get("monitor") or MonitorSection()


def logs_root(config: Any) -> Path:
    section = section_of(config)
    return Path(section.logs) if section.logs else Path(config.pipeline.root) / "logs"


def reports(store: Any) -> list[Artifact]:
    """LIVE MonitoringReport artifacts of this pipeline, newest first."""
    return store.artifacts_of_type(REPORT_TYPE)


def _window(
    section: MonitorSection, since: str | None, until: str | None
) -> tuple[dt.datetime, dt.datetime]:
    try:
        end = logs.parse_time(until)
        start = logs.parse_time(since or section.window, now=end)
    except ValueError as exc:
        raise ConfigError(f"--since/--until: {exc}") from None
    if start >= end:
        raise ConfigError(f"--since: {logs.iso(start)} is not before --until {logs.iso(end)}")
    return start, end


def _reference_version(config: Any, store: Any, version: int | None) -> int:
    if version is not None:
        registry.model_by_version(store, version)  # ConfigError naming the versions
        return version
    served = registry.served_versions(registry.model_dir(config))
    if served:
        return served[-1]
    count = len(registry.models(store))
    if not count:
        raise ConfigError("monitor: no model version yet: run the pipeline first")
    return count


def _label(section: MonitorSection, info: ModelInfo) -> tuple[str, str]:
    column = section.label_column
    if column is None:
        column = info.raw_label_keys[0] if len(info.raw_label_keys) == 1 else info.label_key
    if not column:
        raise ConfigError("monitor.label_column: the model names no label; set it")
    kind = section.label_type or info.columns.get(column) or "float"
    return column, kind


def eval_predictions(info: ModelInfo, bins: int, cache: Path) -> dict[str, Any] | None:
    """The model's prediction histogram on its eval split (computed once, then cached)."""
    file = cache / f"eval-predictions-{info.model_id}-{bins}.json"
    if file.is_file():
        return json.loads(file.read_text())
    if not info.eval_examples or not Path(info.saved_model).is_dir():
        return None
    import numpy as np
    import tensorflow as tf

    from beam_pipeline.monitoring.job import summary

    fn = tf.saved_model.load(info.saved_model).signatures["serving_default"]
    files = tf.io.gfile.glob(info.eval_examples)
    data = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
    parts = [fn(examples=b)["predictions"].numpy() for b in data]
    if not parts:
        return None
    preds = np.concatenate(parts).reshape(sum(len(p) for p in parts), -1).astype(np.float64)
    result = summary(preds, np.zeros(len(preds), dtype=bool), bins)
    filesystem.write_text_atomic(file, json.dumps(result))
    return result


def monitor(
    config: Config,
    *,
    since: str | None = None,
    until: str | None = None,
    version: int | None = None,
    beam_args: list[str] | None = None,
) -> dict[str, Any]:
    """One monitoring round; returns the report (``alerts`` empty when healthy, ``empty`` True
    when the window holds no prediction: then nothing is written)."""
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.runners.options import pipeline_options, runs_in_process

    t0 = time.time()
    section = section_of(config)
    start, end = _window(section, since, until)
    store = Store(config)
    job, ref = monitor_job(config, store, start, end, version)
    models = job.models
    name = config.pipeline.name
    pred_dir = logs.log_dir(logs_root(config), logs.PREDICTIONS, name)
    segments = job.segments
    window = {"since": logs.iso(start), "until": logs.iso(end)}
    base = {"window": window, "model_name": name, "segments": len(segments)}
    if not segments:
        log.info("monitor: no prediction segments in %s; nothing to report", _brief(window))
        return {
            **base,
            "empty": True,
            "alerts": [],
            "message": _empty_message(window, pred_dir, segments),
        }
    root = config.pipeline.root
    options = pipeline_options(config, beam_args)
    outcome: dict[str, Any] = {}

    def write(execution: Execution) -> dict[str, Artifact]:
        out = execution.output_dir
        run = replace(job, output=str(out))
        results = run_job(run, options, runs_in_process(config, beam_args, str(out)))
        if not results["counters"].get("predictions"):
            outcome["counters"] = results["counters"]
            return {}  # nothing of the window: nothing published, the execution CANCELED
        body = _assemble(config, store, section, run, results, models, ref, root, window)
        body["seconds"] = round(time.time() - t0, 2)
        body["report_dir"] = str(execution.destination)
        for file, text in zip(REPORT_FILES, _report_texts(body), strict=True):
            filesystem.write_text(out / file, text)
        execution.inputs.update(_inputs(store, body, models))
        execution.properties.update(_properties(body))
        outcome["body"] = body
        return {"report": _report_artifact(body, out, execution.destination.name)}

    done = Executor(store).execute(
        EXECUTION,
        write,
        destination=monitor_dir(root) / _report_name(end),
        properties={"window": window, "segments": len(segments)},
    )
    if "body" not in outcome:
        counters = outcome.get("counters") or {}
        log.info("monitor: no prediction of %s in %s", name, _brief(window))
        return {
            **base,
            "empty": True,
            "alerts": [],
            "counts": dict(sorted(counters.items())),
            "message": _empty_message(window, pred_dir, segments),
        }
    body = outcome["body"]
    body["execution"] = done.id
    body["artifact"] = done.outputs["report"].id
    log.info(
        "monitor: %s predictions (%s labelled) in %s; %d alerts; %.1f s → %s",
        f"{body['traffic']['predictions']:,}",
        f"{body['traffic']['labelled']:,}",
        _brief(window),
        len(body["alerts"]),
        body["seconds"],
        done.destination,
    )
    return body


def monitor_job(
    config: Config, store: Store, start: dt.datetime, end: dt.datetime, version: int | None
) -> tuple[MonitorJob, int]:
    """The job of a window (its ``output`` still to set) and the reference version: the model
    versions' lineage, the segments that may hold rows of the window (none: nothing to do),
    the feedback segments, the numeric features' training deciles."""
    section = section_of(config)
    ref = _reference_version(config, store, version)
    info = model_info(store, ref)
    label_column, label_kind = _label(section, info)
    features = [c for c in (info.raw_features or info.columns) if c != label_column]
    columns = {c: info.columns.get(c, "string") for c in features}
    name = config.pipeline.name
    root = logs_root(config)
    segments = logs.list_segments(logs.log_dir(root, logs.PREDICTIONS, name), end, start)
    if section.batch_results:
        segments += logs.batch_segments(store, end, start)
    feedback = logs.list_segments(logs.log_dir(root, logs.FEEDBACK, name))
    models: dict[int, ModelInfo] = {}
    buckets: dict[str, list[float]] = {}
    if segments:
        found = {v: (info if v == ref else _safe_info(store, v)) for v in _versions(store)}
        models = {v: m for v, m in found.items() if m is not None}
        categorical = rules.categorical_features(_schema(info), columns)
        if info.train_statistics:
            import tensorflow_data_validation as tfdv

            training = tfdv.load_stats_binary(info.train_statistics)
            buckets = rules.numeric_buckets(training, columns, categorical)
    evaluate = config.stages.get("evaluate")
    job = MonitorJob(
        segments=segments,
        feedback=feedback,
        model_name=name,
        columns=columns,
        label_column=label_column,
        label_kind=label_kind,
        since=start,
        until=end,
        models=models,
        output="",  # the execution's staging folder, set in `write`
        label_values=dict(section.label_values),
        slice_specs=list(getattr(evaluate, "slice_specs", []) or []),
        boundaries=dict(getattr(evaluate, "bucket_boundaries", {}) or {}),
        task=_task(info, evaluate),
        auc_buckets=int(getattr(evaluate, "auc_buckets", 10_000)),
        threshold=float(getattr(evaluate, "decision_threshold", 0.5)),
        bins=section.bins,
        only_version=version,
        buckets=buckets,
        float_columns=[c for c, kind in columns.items() if kind == "float"],
    )
    return job, ref


def _safe_info(store: Any, version: int) -> ModelInfo | None:
    try:
        return model_info(store, version)
    except ConfigError:
        return None


def _versions(store: Any) -> list[int]:
    return list(range(1, len(registry.models(store)) + 1))


def _task(info: ModelInfo, evaluate: Any) -> str:
    task = getattr(evaluate, "task", "auto")
    if task and task != "auto":
        return task
    if info.task:
        return info.task
    return "classification"


def _brief(window: dict[str, str]) -> str:
    return f"[{window['since']}, {window['until']})"


def _empty_message(window: dict[str, str], folder: Path, segments: list[str]) -> str:
    """What was looked at, for a window without predictions."""
    online = [f for f in segments if Path(f).parent == folder]
    opened = sum(logs.is_open(f) for f in online)
    batch = len(segments) - len(online)
    return (
        f"no predictions logged in the window {_brief(window)}: read {len(online)} segments "
        f"({opened} still open) of {folder} and {batch} batch scoring outputs that could hold "
        "rows of it; nothing to report (widen it with --since, e.g. --since 7d)"
    )


def _report_name(end: dt.datetime) -> str:
    return end.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _assemble(
    config: Any,
    store: Any,
    section: MonitorSection,
    job: MonitorJob,
    results: dict[str, Any],
    models: dict[int, ModelInfo],
    ref: int,
    root: str,
    window: dict[str, str],
) -> dict[str, Any]:
    """The report body: traffic, feedback, predictions, quality, skew, drift, alerts."""
    import tensorflow_data_validation as tfdv

    c = results["counters"]
    out = Path(job.output)
    labels = results["labels"]
    per_version = {int(t["version"]): t for t in results["traffic"]}
    covered = sorted(v for v in per_version if v in models)
    predictions = int(c.get("predictions", 0))
    labelled = int(c.get("labelled", 0))
    in_window = int(labels.get("in_window", 0))
    traffic = {
        "predictions": predictions,
        "labelled": labelled,
        "coverage": labelled / predictions if predictions else 0.0,
        "per_version": {
            str(v): {
                "predictions": t["rows"],
                "labelled": t["labelled"],
                "coverage": t["labelled"] / t["rows"] if t["rows"] else 0.0,
            }
            for v, t in sorted(per_version.items())
        },
        "unknown_versions": sorted(v for v in per_version if v not in models),
    }
    bad = {
        "segments": int(c.get("segments", 0)) + int(c.get("feedback_segments", 0)),
        "corrupt_lines": int(c.get("corrupt_lines", 0)),
        "corrupt_segments": int(c.get("corrupt_segments", 0)),
        "bad_feature_values": int(c.get("bad_values", 0)),
        "outside_window": int(c.get("outside_window", 0)),
        "other_model": int(c.get("other_model", 0)),
        "unlabelable": int(c.get("unlabelable", 0)),
        "rejected_files": sorted(
            {
                json.loads(x)["file"]
                for f in rejected_dir(out).glob("*.jsonl")
                for x in f.read_text().splitlines()
                if x
            }
        ),
    }
    feedback = {
        "records": int(c.get("feedback_records", 0)),
        "labels": int(labels.get("labels", 0)),
        "duplicates": int(labels.get("duplicates", 0)),
        "wrong_type": int(c.get("feedback_wrong_type", 0)),
        "in_window": in_window,
        "unknown_ids": max(0, in_window - int(c.get("labelled_in_window", 0))),
        "label_column": job.label_column,
    }
    for f in bad["rejected_files"]:
        log.warning("monitor: skipped corrupt lines in %s (listed in the report's rejected/)", f)
    alerts: list[dict[str, Any]] = []

    # Predictions and their shift against the eval split
    dist: dict[str, Any] = {}
    for v in covered:
        t = per_version[v]
        entry: dict[str, Any] = {
            "histogram": t.get("histogram"),
            "classes": t.get("classes"),
            "mean": t["prediction_sum"] / t["rows"]
            if t.get("prediction_sum") is not None and t["rows"]
            else None,
        }
        ev = eval_predictions(models[v], section.bins, monitor_cache(root))
        if ev:
            key = "histogram" if t.get("histogram") else "classes"
            entry["eval_" + key] = ev.get(key)
            entry["eval_mean"] = (
                ev["prediction_sum"] / ev["rows"] if ev.get("prediction_sum") is not None else None
            )
            entry["shift"] = rules.js_divergence(t.get(key) or [], ev.get(key) or [])
            if (
                section.prediction_shift is not None
                and entry["shift"] is not None
                and entry["shift"] > section.prediction_shift
                and t["rows"] >= section.min_predictions
            ):
                alerts.append(
                    {
                        "category": "prediction_shift",
                        "version": v,
                        "feature": "prediction",
                        "value": entry["shift"],
                        "threshold": section.prediction_shift,
                        "count": t["rows"],
                        "window": _brief(window),
                        "message": f"v{v} predictions: Jensen-Shannon divergence "
                        f"{entry['shift']:.3f} from the eval split's > "
                        f"{section.prediction_shift:g} ({t['rows']:,} predictions in "
                        f"{_brief(window)})",
                    }
                )
        dist[str(v)] = entry

    # Live quality, side by side with evaluation time
    from beam_pipeline.evaluation import canonical_slice

    live: dict[int, dict[str, dict[str, Any]]] = {}
    for row in results["quality"]:
        live.setdefault(int(row["version"]), {})[row["slice"]] = row["metrics"]
    quality: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    for v in covered:
        info = models[v]
        now = live.get(v, {})
        slices = sorted(k for k in set(now) | set(info.eval_slices) if k != OVERALL)
        quality[str(v)] = {
            "overall": {"live": now.get(OVERALL, {}), "evaluated": info.eval_metrics},
            "slices": {
                k: {"live": now.get(k, {}), "evaluated": info.eval_slices.get(k, {})}
                for k in slices
            },
        }
        evaluated = {OVERALL: info.eval_metrics, **info.eval_slices}
        checks += rules.quality_checks(section, v, now, evaluated, canonical_slice)
    alerts += [
        dict(
            ch,
            window=_brief(window),
            message=f"{ch['message']} ({ch['labelled']:,} labelled rows in {_brief(window)})",
        )
        for ch in checks
        if ch["alert"]
    ]

    # Skew against the training data, drift against the previous window (numeric features on
    # the training data's deciles, categorical ones by L-infinity: `rules.distances`)
    current = tfdv.load_stats_binary(str(out / STATS_FILE))
    info = models[ref]
    schema = _schema(info)
    features = list(job.columns)
    categorical = rules.categorical_features(schema, job.columns)
    brief = _brief(window)
    current_buckets = results.get("buckets") or {}
    skew: list[dict[str, Any]] = []
    drift: list[dict[str, Any]] = []
    previous = _previous_report(store, window)
    if info.train_statistics:
        training = tfdv.load_stats_binary(info.train_statistics)
        reference = training_buckets(
            info.train_examples, job.buckets, monitor_cache(root), str(info.statistics_id)
        )
        skew = rules.distances(
            "skew",
            section.skew,
            current,
            training,
            current_buckets,
            reference,
            categorical,
            features,
            schema,
            brief,
        )
    if previous is not None:
        prev_stats = tfdv.load_stats_binary(str(previous.path / STATS_FILE))
        prev_buckets = _previous_buckets(previous, job.buckets)
        drift = rules.distances(
            "drift",
            section.drift,
            current,
            prev_stats,
            current_buckets,
            prev_buckets,
            categorical,
            features,
            schema,
            brief,
        )
    for row in skew + drift:
        if row["alert"]:
            alerts.append(
                {**row, "message": f"{row['category']}: {row['feature']}: {row['description']}"}
            )
    bad_check = rules.bad_input(section, bad, int(c.get("rows_read", 0)))
    bad["rate"] = bad_check["value"]
    if bad_check["alert"]:
        alerts.append(
            {**bad_check, "window": brief, "message": f"{bad_check['message']} in {brief}"}
        )
    return {
        "model_name": job.model_name,
        "window": window,
        "versions": covered,
        "reference_version": ref,
        "traffic": traffic,
        "feedback": feedback,
        "bad_input": bad,
        "predictions": dist,
        "quality": quality,
        "quality_checks": checks,
        "skew": skew,
        "drift": drift,
        "buckets": {
            name: {"boundaries": edges, "counts": current_buckets.get(name)}
            for name, edges in job.buckets.items()
        },
        "drift_baseline": (
            {"id": previous.id, "window": previous.properties.get("window")} if previous else None
        ),
        "training_statistics": info.train_statistics,
        "alerts": alerts,
        "alert_kinds": rules.alert_kinds(alerts),
        "features": features,
        "column_types": {**job.columns, job.label_column: job.label_kind},
    }


def _schema(info: ModelInfo) -> Any:
    if not info.schema or not Path(info.schema).is_file():
        return None
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    return text_format.Parse(Path(info.schema).read_text(), schema_pb2.Schema())


def _previous_report(store: Any, window: dict[str, str]) -> Artifact | None:
    """The newest earlier report (its window ended no later than this one's) with statistics."""
    for art in reports(store):
        w = art.properties.get("window") or {}
        if w.get("until", "") <= window["until"] and (art.path / STATS_FILE).is_file():
            return art
    return None


def _previous_buckets(previous: Artifact, buckets: dict[str, list[float]]) -> dict[str, list[int]]:
    """The previous window's decile counts of the features counted on the same boundaries."""
    file = previous.path / "report.json"
    if not file.is_file():
        return {}
    old = json.loads(file.read_text()).get("buckets") or {}
    return {
        name: entry["counts"]
        for name, entry in old.items()
        if entry.get("counts") and buckets.get(name) == entry.get("boundaries")
    }


def _report_texts(body: dict[str, Any]) -> tuple[str, str, str]:
    """report.json, report.txt, report.html."""
    return json.dumps(body, indent=1, default=str), report.text(body), report.html(body)


def _inputs(store: Any, body: dict[str, Any], models: dict[int, ModelInfo]) -> dict[str, Artifact]:
    """The ``monitor`` execution's inputs: the models covered, the reference's training
    statistics, the drift baseline."""
    inputs: dict[str, Artifact] = {}
    for v in body["versions"]:
        [model] = store.artifacts([models[v].model_id])
        inputs[f"model_v{v}" if len(body["versions"]) > 1 else "model"] = model
    ref = models.get(body["reference_version"])
    if ref is not None and ref.statistics_id is not None:
        inputs["training_statistics"] = store.artifacts([ref.statistics_id])[0]
    if body.get("drift_baseline"):
        inputs["previous_report"] = store.artifacts([body["drift_baseline"]["id"]])[0]
    return inputs


def _report_artifact(body: dict[str, Any], folder: Path, name: str) -> Artifact:
    return Artifact(
        REPORT_TYPE,
        str(folder),
        {
            "window": body["window"],
            "versions": body["versions"],
            "predictions": body["traffic"]["predictions"],
            "labelled": body["traffic"]["labelled"],
            "alerts": len(body["alerts"]),
            "alert_kinds": body["alert_kinds"],
            "healthy": not body["alerts"],
        },
        fingerprint=name,
    )


def _properties(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": time.time(),
        "window": body["window"],
        "versions": body["versions"],
        "alerts": [a["message"] for a in body["alerts"]][:50],
        "predictions": body["traffic"]["predictions"],
        "labelled": body["traffic"]["labelled"],
    }
