"""Benchmark: the monitor job against TFDV directly on the same logged records, and the join.

    .venv/bin/python scripts/bench_monitor.py configs/taxi.yaml [--rows 1000000] [--labelled 0.1]
        [--rounds 3] [--data PATH]

Needs a trained model in the config's pipeline (run the pipeline first). Makes the records with
the real model: generates the rows (scripts/gen_taxi.py), scores them with ``beam-pipeline score``
and files its JSON Lines output as prediction-log segments (the record format is the same) under
``bench/taxi-1m/monitor-ROWS-FRACTION/`` (kept: a second run reuses them); writes labels (the
``tips`` column) for a ``--labelled`` fraction of the rows as a feedback segment. Then measures,
on those files:

- monitor: `beam_pipeline.monitoring.monitor.monitor` end to end (read, join, statistics,
  traffic, live quality, skew, report, ML Metadata), on the config's runner: with the default
  DirectRunner in_memory, in this process without a Beam pipeline (`job.run_in_process`);
- TFDV direct: a Beam pipeline that reads the same segments with pyarrow and runs
  ``tfdv.GenerateStatistics`` on the same features (no join, no metrics, no report);
- TFDV in-process (a reference, not the target): the same reading and TFDV's statistics
  generators in this process (`monitoring.statistics.InProcessStatistics`, what the monitor's
  in-process path runs), no Beam: what the statistics alone cost without the runner;
- join: reading the feedback, keeping the last label per id and joining every prediction batch
  (`logs.latest_labels` + `job.join`), in-process.

The monitor and TFDV direct are interleaved round by round (``--rounds``, default 3); the JSON
gives each one's seconds per round, min and median, the ratios of the mins and of the medians,
and the load average before and after. The target is monitor / TFDV direct <= 1.3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def make_logs(config: object, csv: Path, version: int, logs_dir: Path, labelled: float) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson

    from beam_pipeline.jobs import score as scoring

    scratch = Path(tempfile.mkdtemp(prefix="bench-monitor-score-"))
    t0 = time.time()
    summary = scoring.score(config, str(csv), str(scratch / "preds"), model_version=version)
    score_s = time.time() - t0
    pred_dir = logs_dir / "predictions" / config.pipeline.name  # type: ignore[attr-defined]
    pred_dir.mkdir(parents=True)
    files = sorted((scratch / "preds").glob("predictions-*.jsonl"))
    for i, f in enumerate(files):
        os.replace(f, pred_dir / f"part-20000101T000000{i:06d}-1-{i:06d}.jsonl")
    shutil.rmtree(scratch, ignore_errors=True)
    ids = pa.concat_arrays(
        [
            pajson.read_json(str(f)).column("request_id").combine_chunks()
            for f in sorted(pred_dir.glob("*.jsonl"))
        ]
    )
    tips = pacsv.read_csv(str(csv)).column("tips").combine_chunks()
    rng = np.random.default_rng(7)
    chosen = np.flatnonzero(rng.random(len(ids)) < labelled)
    # request ids are "<job>/<file>/<n>": row n of the CSV
    rows = np.array([int(s.rsplit("/", 1)[1]) for s in ids.take(pa.array(chosen)).to_pylist()])
    fb = pa.table(
        {
            "request_id": ids.take(pa.array(chosen)),
            "label": tips.take(pa.array(rows)),
            "time": pa.array(["2026-01-01T00:00:00Z"] * len(chosen)),
        }
    )
    fb_dir = logs_dir / "feedback" / config.pipeline.name  # type: ignore[attr-defined]
    fb_dir.mkdir(parents=True)
    with open(fb_dir / "part-20000101T000000000000-1-000000.jsonl", "w") as out:
        for rec in fb.to_pylist():
            out.write(json.dumps(rec) + "\n")
    return {
        "predictions": summary["rows"],
        "labels": len(chosen),
        "score_seconds": round(score_s, 1),
    }


def tfdv_direct(segments: list[str], columns: dict[str, str], out: Path) -> float:
    """TFDV's GenerateStatistics over the same records, read and flattened with pyarrow."""
    import apache_beam as beam
    import pyarrow as pa
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    t0 = time.time()
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        _ = (
            p
            | beam.Create(segments)
            | beam.Reshuffle()
            | beam.FlatMap(_features, columns).with_output_types(pa.RecordBatch)
            | tfdv.GenerateStatistics(tfdv.StatsOptions())
            | tfdv.WriteStatisticsToBinaryFile(str(out))
        )
    return time.time() - t0


def tfdv_in_process(segments: list[str], columns: dict[str, str], out: Path) -> float:
    """TFDV's statistics generators over the same records in this process (no Beam)."""
    import tensorflow_data_validation as tfdv

    from beam_pipeline.monitoring.statistics import InProcessStatistics

    t0 = time.time()
    stats = InProcessStatistics(tfdv.StatsOptions())
    for path in segments:
        for batch in _features(path, columns):
            stats.add(batch)
    out.write_bytes(stats.result().SerializeToString())
    return time.time() - t0


def _features(path: str, columns: dict[str, str]) -> object:
    import pyarrow.json as pajson

    from beam_pipeline.monitoring.job import features_of, own
    from beam_pipeline.monitoring.logs import typed

    t = pajson.read_json(path)
    feats = t.column("features").combine_chunks()
    import pyarrow as pa

    arrays = {name: typed(feats.field(name), kind)[0] for name, kind in columns.items()}
    batch = pa.RecordBatch.from_arrays(list(arrays.values()), names=list(arrays))
    for start in range(0, batch.num_rows, 65536):
        yield features_of(own(batch.slice(start, 65536)), list(columns))


def join_only(segments: list[str], feedback: list[str], columns: dict[str, str]) -> dict:
    """Feedback read, deduplicated and joined with every prediction batch, in-process."""
    import datetime as dt

    import pyarrow.compute as pc

    from beam_pipeline.monitoring import logs
    from beam_pipeline.monitoring.job import MonitorJob, join

    since = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    until = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    job = MonitorJob([], [], "taxi", columns, "tips", "float", since, until, {}, "")
    parts = [
        logs.predictions(logs.read_segment(s), "taxi", columns, since, until).batch
        for s in segments
    ]
    t0 = time.time()
    tables = [logs.feedback_table(logs.read_segment(f), "float", {})[0] for f in feedback]
    labels, _ = logs.latest_labels(tables, "float")
    index = labels.column("request_id").combine_chunks()
    values = labels.column("label").combine_chunks()
    times = labels.column("time").combine_chunks()
    read_s = time.time() - t0
    t1 = time.time()
    matched = sum(
        int(pc.sum(join(b, index, values, times, job).column("__label__").is_valid()).as_py())
        for b in parts
    )
    return {
        "labels_read_and_dedup_seconds": round(read_s, 2),
        "join_seconds": round(time.time() - t1, 2),
        "rows": sum(b.num_rows for b in parts),
        "matched": matched,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--model", type=int)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--labelled", type=float, default=0.1)
    ap.add_argument("--data", type=Path, default=REPO / "bench" / "taxi-1m" / "data.csv")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("beam_pipeline").setLevel(logging.INFO)
    from gen_taxi import generate

    from beam_pipeline.core import registry
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.monitoring import logs
    from beam_pipeline.monitoring.monitor import monitor

    csv = (
        generate(a.rows, a.data)
        if a.rows == 1_000_000
        else generate(a.rows, a.data.with_name(f"data-{a.rows}.csv"))
    )
    # The logs are kept (bench/ is git-ignored): a second run measures without scoring again.
    work = a.data.parent / f"monitor-{a.rows}-{a.labelled}"
    try:
        overrides = [f"monitor.logs={work / 'logs'}", "monitor.batch_results=false"]
        config = load(a.config, overrides)
        store = Store(config)
        version = a.model or len(registry.models(store))
        if (work / "made.json").is_file():
            made = json.loads((work / "made.json").read_text())
        else:
            shutil.rmtree(work, ignore_errors=True)
            made = make_logs(config, csv, version, work / "logs", a.labelled)
            (work / "made.json").write_text(json.dumps(made))
        segments = logs.list_segments(work / "logs" / "predictions" / config.pipeline.name)
        feedback = logs.list_segments(work / "logs" / "feedback" / config.pipeline.name)
        load_before = os.getloadavg()
        monitor_s: list[float] = []
        direct_s: list[float] = []
        in_process_s: list[float] = []
        for i in range(a.rounds):  # interleaved: both see the same machine, round by round
            t0 = time.time()
            body = monitor(config, since="2000-01-01T00:00:00Z", version=version)
            monitor_s.append(time.time() - t0)
            columns = {c: body["column_types"][c] for c in body["features"]}
            direct_s.append(tfdv_direct(segments, columns, work / "direct.pb"))
            in_process_s.append(tfdv_in_process(segments, columns, work / "direct.pb"))
            print(
                f"round {i + 1}: monitor {monitor_s[-1]:.1f} s, TFDV direct {direct_s[-1]:.1f} s,"
                f" TFDV in-process {in_process_s[-1]:.1f} s",
                file=sys.stderr,
            )
        joined = join_only(segments, feedback, columns)
    finally:
        (work / "direct.pb").unlink(missing_ok=True)
    import statistics

    def stats(xs: list[float]) -> dict[str, object]:
        return {
            "rounds": [round(x, 2) for x in xs],
            "min": round(min(xs), 2),
            "median": round(statistics.median(xs), 2),
        }

    result = {
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "model_version": version,
        "logs": made,
        "monitor_seconds": stats(monitor_s),
        "tfdv_direct_seconds": stats(direct_s),
        "monitor_vs_tfdv_min": round(min(monitor_s) / min(direct_s), 3),
        "monitor_vs_tfdv_median": round(
            statistics.median(monitor_s) / statistics.median(direct_s), 3
        ),
        "tfdv_in_process_seconds": stats(in_process_s),
        "monitor_vs_tfdv_in_process_min": round(min(monitor_s) / min(in_process_s), 3),
        "monitor_vs_tfdv_in_process_median": round(
            statistics.median(monitor_s) / statistics.median(in_process_s), 3
        ),
        "monitor_rows_per_s": round(body["traffic"]["predictions"] / min(monitor_s)),
        "join": joined,
        "predictions": body["traffic"]["predictions"],
        "labelled": body["traffic"]["labelled"],
        "alerts": len(body["alerts"]),
    }
    print(json.dumps(result, indent=1))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
