"""Benchmark: the batch scoring job against calling the same signature in-process.

    .venv/bin/python scripts/bench_score.py configs/taxi.yaml [--model VERSION] [--rows 1000000]

Needs a trained model in the config's pipeline (run the pipeline first). Generates the rows with
scripts/gen_taxi.py, then measures, on the same file and the same batches:

- job: ``beam_pipeline.jobs.score.score`` end to end (read, check, model, write JSONL), on the
  path it takes for the config (DirectRunner in_memory: in-process, `score.run_in_process`);
  ``--beam-too`` also times the same job through the Beam DirectRunner each round; CPU seconds
  (all threads) beside wall seconds, since other processes' load slows wall time only;
- in-process: ``serving_raw`` called on the same batches, tensors built beforehand (model time
  only), and the same loop including reading and building the tensors (no Beam, no output);
- evaluation time against training time, from the latest evaluate and train executions in MLMD.

The job and the in-process loop alternate for ``--rounds`` rounds (TensorFlow is imported before
the first, since the in-process figures exclude it too); min and median of each, with the load
average. Prints one JSON object; the target is job rows/s >= 50 % of in-process model-only rows/s
(medians). ``--rows`` takes any size (a tiny one is a smoke test).
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


def in_process(
    saved_model: str, csv: str, columns: dict[str, str], features: list[str], batch_size: int
) -> dict[str, float]:
    import tensorflow as tf

    from beam_pipeline.io import readers
    from beam_pipeline.jobs.score import raw_inputs

    fn = tf.saved_model.load(saved_model).signatures["serving_raw"]
    t0 = time.time()
    batches = []
    for chunk in readers.read_csv(csv, list(columns), columns, batch_size):
        for start in range(0, chunk.batch.num_rows, batch_size):
            part = chunk.batch.slice(start, batch_size)
            batches.append(raw_inputs(part, features))
    prepare = time.time() - t0
    rows = sum(int(next(iter(b.values())).shape[0]) for b in batches)
    fn(**batches[0])  # warm-up (tracing, thread pools)
    t0, cpu0 = time.time(), cpu_seconds()
    for b in batches:
        fn(**b)["predictions"].numpy()
    model = time.time() - t0
    model_cpu = cpu_seconds() - cpu0
    return {
        "rows": rows,
        "model_seconds": round(model, 4),  # a smoke test's few rows take milliseconds
        "model_cpu_seconds": round(model_cpu, 2),
        "prepare_seconds": round(prepare, 2),
        "model_rows_per_s": round(rows / model),
        "read_and_model_rows_per_s": round(rows / (model + prepare)),
    }


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (robust to other processes' load)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stage_seconds(store: object, stage: str) -> float | None:
    from ml_metadata.proto import metadata_store_pb2 as pb

    from beam_pipeline.core.metadata import props

    done = [e for e in store.executions(stage) if e.last_known_state == pb.Execution.COMPLETE]
    return props(max(done, key=lambda e: e.id)).get("seconds") if done else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--model", type=int)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, default=REPO / "bench" / "taxi-1m" / "data.csv")
    ap.add_argument("--batch-size", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--beam-too",
        action="store_true",
        help="also run the job through the Beam DirectRunner (as other runners do) each round",
    )
    a = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("beam_pipeline").setLevel(logging.INFO)
    from gen_taxi import generate

    from beam_pipeline.core import registry
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.jobs import score as scoring

    csv = (
        generate(a.rows, a.data)
        if a.rows == 1_000_000
        else generate(a.rows, a.data.with_name(f"data-{a.rows}.csv"))
    )
    config = load(a.config)
    store = Store(config)
    version = a.model or len(registry.models(store))
    model = registry.model_by_version(store, version)
    columns = scoring.input_columns([str(csv)], "csv", scoring.training_columns(store, model))
    features = list(model.properties["raw_features"])

    import statistics

    import tensorflow as tf  # noqa: F401 - imported before timing (the baseline excludes it)

    in_process_path = scoring.runs_in_process

    def run_score(beam: bool) -> tuple[float, dict, int]:
        scoring.runs_in_process = (lambda *_: False) if beam else in_process_path
        out = Path(tempfile.mkdtemp(prefix="bench-score-"))
        try:
            t0, cpu0 = time.time(), cpu_seconds()
            summary = scoring.score(
                config, str(csv), str(out / "preds"), model_version=version, batch_size=a.batch_size
            )
            seconds = time.time() - t0
            cpus.append(cpu_seconds() - cpu0)
            size = sum(f.stat().st_size for f in (out / "preds").glob("predictions-*"))
        finally:
            shutil.rmtree(out, ignore_errors=True)
            scoring.runs_in_process = in_process_path
        return seconds, summary, size

    jobs, bases, beams, cpus, beam_cpus = [], [], [], [], []
    for _ in range(max(a.rounds, 1)):
        seconds, summary, size = run_score(beam=False)
        jobs.append(seconds)
        job_cpus = cpus.pop()
        if a.beam_too:
            beams.append(run_score(beam=True)[0])
            beam_cpus.append(cpus.pop())
        cpus.append(job_cpus)
        bases.append(
            in_process(str(model.path / "saved_model"), str(csv), columns, features, a.batch_size)
        )
    rows = summary["rows"]
    median_job = statistics.median(jobs)
    model_s = [b["model_seconds"] for b in bases]
    both_s = [b["model_seconds"] + b["prepare_seconds"] for b in bases]
    job = {
        "rows": rows,
        "seconds": {"min": round(min(jobs), 2), "median": round(median_job, 2)},
        "rows_per_s_median": round(rows / median_job),
        "cpu_seconds_median": round(statistics.median(cpus), 2),
        "output_mb": round(size / 1e6),
    }
    base = {
        "model_seconds": {"min": min(model_s), "median": statistics.median(model_s)},
        "read_and_model_seconds": {
            "min": round(min(both_s), 2),
            "median": round(statistics.median(both_s), 2),
        },
        "model_rows_per_s_median": round(rows / statistics.median(model_s)),
        "model_cpu_seconds_median": statistics.median(b["model_cpu_seconds"] for b in bases),
    }
    if beams:
        job["beam_direct_runner_seconds"] = {
            "min": round(min(beams), 2),
            "median": round(statistics.median(beams), 2),
        }
        job["beam_direct_runner_cpu_seconds_median"] = round(statistics.median(beam_cpus), 2)
    train_s, eval_s = stage_seconds(store, "train"), stage_seconds(store, "evaluate")
    ratio = statistics.median(model_s) / median_job
    result = {
        "cpus": os.cpu_count(),
        "rounds": len(jobs),
        "model_version": version,
        "batch_size": a.batch_size,
        "score_job": job,
        "in_process": base,
        "job_vs_model_only": round(ratio, 3),
        "job_vs_model_only_best": round(min(model_s) / min(jobs), 3),
        "job_vs_read_and_model": round(statistics.median(both_s) / median_job, 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "target": ">= 0.5 of the model-only rate",
        "verdict": "PASS" if ratio >= 0.5 else "MISS",
        "train_seconds": train_s,
        "evaluate_seconds": eval_s,
        "evaluate_vs_train": round(eval_s / train_s, 3) if train_s and eval_s else None,
    }
    print(json.dumps(result, indent=1))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
