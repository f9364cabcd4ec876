"""Benchmark the transform stage and the training input (issue 3, item 6).

    .venv/bin/python scripts/bench_train.py               # 1,000,000 rows, work in bench/
    .venv/bin/python scripts/bench_train.py --quick       # 100,000 rows: a smoke test
    .venv/bin/python scripts/bench_train.py --rows 250000 --repeat 2
    ./scripts/bench train [...]                           # the same, after ./scripts/bootstrap

Targets, on generated taxi data (scripts/gen_taxi.py) taken through our ingest -> statistics ->
schema -> validate first (untimed, the orchestrator with an in-memory metadata store):
  * transform: our stage (through the orchestrator, no cache) <= 1.15x the seconds of calling
    tf.Transform directly on the same raw TFRecords with the same preprocessing_fn and the same
    DirectRunner options (AnalyzeAndTransformDataset on train, TransformDataset on eval, read
    with tfx_bsl's TFExampleRecord, written as gzip TFRecords by WriteToTFRecord);
  * training input: examples/s of the tf.data input pipeline alone (modeling.make_dataset, as the
    train stage builds it, iterated without a model) >= 5x the training step rate (model.fit with
    the taxi model at its default hyperparameters and configs/taxi.yaml's batch size; the first,
    tracing epoch excluded). The step rate is the higher of model.fit on that input pipeline and
    model.fit on a few batches held in memory (the model's own rate, no input cost).

The heavy parts run in subprocesses (tf.Transform can crash at interpreter exit; each child
prints its JSON result and leaves with os._exit). Prints a summary and writes it as JSON to
{workdir}/bench-train-results.json. Exits 0 even when a target is missed (PASS or MISS).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # gen_taxi, bench

import bench  # noqa: E402
from bench import data_file, say  # noqa: E402

SEED = 42
TAXI_CONFIG = REPO / "configs" / "taxi.yaml"
TRANSFORM_TARGET = 1.15  # ours / direct seconds, at most
INPUT_TARGET = 5.0  # input examples/s / training examples/s, at least
UPSTREAM = ("ingest", "statistics", "schema", "validate")

log = logging.getLogger("bench_train")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------
# Inputs and configs


def write_config(workdir: Path, name: str, csv_path: Path) -> Path:
    """A bench config: the taxi config up to transform (absolute paths) on the generated CSV."""
    import yaml

    taxi = yaml.safe_load(TAXI_CONFIG.read_text())
    module = (TAXI_CONFIG.parent / taxi["transform"]["module"]).resolve()
    return bench.write_config(
        workdir,
        name,
        csv_path,
        {
            "statistics": {**taxi.get("statistics", {}), "html": False},
            "schema": taxi.get("schema", {}),
            "validation": taxi.get("validation", {}),
            "transform": {**taxi["transform"], "module": str(module)},
        },
    )


def taxi_train_section() -> dict[str, Any]:
    import yaml

    train = dict(yaml.safe_load(TAXI_CONFIG.read_text())["train"])
    train["module"] = str((TAXI_CONFIG.parent / train["module"]).resolve())
    return train


def stages() -> dict[str, Any]:
    from beam_pipeline.stages import ingest, schema, statistics, transform, validate

    mods = (ingest, statistics, schema, validate, transform)
    return {m.STAGE.name: m.STAGE for m in mods}


def orchestrator(config_path: Path) -> Any:
    from beam_pipeline.core import config as config_mod
    from beam_pipeline.core.orchestrator import Orchestrator

    all_stages = stages()
    sections = {s.section_name: s.section for s in all_stages.values()}
    config = config_mod.load(config_path, sections=sections)
    return Orchestrator(config, all_stages, use_cache=False)


def check(result: Any, names: tuple[str, ...]) -> None:
    for name in names:
        entry = result.stages.get(name, {})
        if result.status != "completed" or entry.get("status") != "completed":
            raise SystemExit(f"bench: our {name} stage did not complete: {result.error}")


# ---------------------------------------------------------------------------------------------
# Transform: our stage vs tf.Transform called directly (child process)


def direct_transform(orch: Any, out_dir: Path) -> float:
    """What a user writes by hand with tf.Transform; returns its seconds."""
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tfx_bsl.coders import example_coder
    from tfx_bsl.public import tfxio

    from beam_pipeline.core.artifacts import split_dir
    from beam_pipeline.runners.options import pipeline_options
    from beam_pipeline.stages import transform

    section = orch.config.section("transform")
    outs = {**orch._latest_outputs(orch.stages["ingest"])}  # noqa: SLF001 - bench introspection
    outs.update(orch._latest_outputs(orch.stages["schema"]))  # noqa: SLF001
    examples, schema_art = outs["ingest.examples"], outs["schema.schema"]

    class Encode(beam.DoFn):
        def setup(self) -> None:
            self.encoder = example_coder.RecordBatchToExamplesEncoder()

        def process(self, element: Any) -> Any:
            yield from self.encoder.encode(element[0])

    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    # Same user module and schema file, loaded as a user would (no error wrapping).
    from beam_pipeline.core.artifacts import load_schema
    from beam_pipeline.core.user_modules import load_module

    preprocessing_fn = load_module(section.module, transform.MODULE_KEY).preprocessing_fn
    schema = load_schema(schema_art)
    splits = examples.splits
    tfxios = {
        s: tfxio.TFExampleRecord(f"{split_dir(examples.path, s)}/*", schema=schema) for s in splits
    }
    with beam.Pipeline(options=pipeline_options(orch.config)) as p:
        with tft_beam.Context(temp_dir=str(out_dir / "tmp")):
            raw = p | "ReadTrain" >> tfxios["train"].BeamSource()
            (train_t, _), transform_fn = (
                raw,
                tfxios["train"].TensorAdapterConfig(),
            ) | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                preprocessing_fn, output_record_batches=True
            )
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(
                str(out_dir / "transform_graph")
            )
            for s in splits:
                if s == "train":
                    data = train_t
                else:
                    raw_s = p | f"Read[{s}]" >> tfxios[s].BeamSource()
                    data, _ = (
                        (raw_s, tfxios[s].TensorAdapterConfig()),
                        transform_fn,
                    ) | f"Transform[{s}]" >> tft_beam.TransformDataset(output_record_batches=True)
                _ = (
                    data
                    | f"Encode[{s}]" >> beam.ParDo(Encode())
                    | f"Write[{s}]"
                    >> beam.io.WriteToTFRecord(
                        str(out_dir / f"Split-{s}" / "data"),
                        file_name_suffix=".tfrecord.gz",
                        num_shards=section.shards,
                        compression_type=beam.io.filesystem.CompressionTypes.GZIP,
                    )
                )
    return time.perf_counter() - t0


def count_records(folder: Path) -> int:
    import tensorflow as tf

    files = sorted(str(f) for f in folder.glob("*.tfrecord.gz"))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=4)
    return int(ds.reduce(0, lambda n, _: n + 1).numpy())


def same_graph(ours: Path, direct: Path) -> bool:
    """Same transformed schema and the same vocabularies."""
    files = ["transformed_metadata/schema.pbtxt"]
    files += [
        str(f.relative_to(ours)) for f in sorted((ours / "transform_fn" / "assets").glob("*"))
    ]
    return all(
        (ours / f).is_file()
        and (direct / f).is_file()
        and (ours / f).read_bytes() == (direct / f).read_bytes()
        for f in files
    )


def transform_child(workdir: Path, rows: int, repeat: int) -> dict[str, Any]:
    logging.disable(logging.WARNING)
    import tensorflow_transform  # noqa: F401 - import costs paid before anything is timed

    # Warm-up: one small run of everything, untimed (imports, Beam start-up, first tracing).
    say("warming up (2,000 rows, untimed) ...")
    small = orchestrator(write_config(workdir, "train-warmup", data_file(workdir, 2000)))
    check(small.run(to="transform"), (*UPSTREAM, "transform"))
    direct_transform(small, workdir / "runs" / "train-warmup" / "direct")

    csv_path = data_file(workdir, rows)
    orch = orchestrator(write_config(workdir, f"train-{rows}", csv_path))
    say(f"ingest -> statistics -> schema -> validate (ours, untimed): {rows:,} rows ...")
    t0 = time.perf_counter()
    check(orch.run(to="validate"), UPSTREAM)
    upstream_s = time.perf_counter() - t0
    direct_dir = workdir / "tft-direct"
    ours_times, direct_times, loads = [], [], []
    for i in range(repeat):  # alternate, so that both see the same machine; keep the best
        tag = f" (run {i + 1}/{repeat})" if repeat > 1 else ""
        say(f"transform (ours, through the orchestrator){tag} ...")
        t0 = time.perf_counter()
        result = orch.run(only="transform")
        ours_times.append(time.perf_counter() - t0)
        check(result, ("transform",))
        loads.append(load())
        say(f"  {ours_times[-1]:.1f} s; transform (tf.Transform directly){tag} ...")
        direct_times.append(direct_transform(orch, direct_dir))
        loads.append(load())
        say(f"  {direct_times[-1]:.1f} s")
    outs = orch._latest_outputs(orch.stages["transform"])  # noqa: SLF001 - bench introspection
    graph = Path(outs["transform.transform_graph"].uri)
    transformed = Path(outs["transform.transformed_examples"].uri)
    # Both sides counted the same way: the records in the files.
    ours_counts = {s.name[6:]: count_records(s) for s in sorted(transformed.glob("Split-*"))}
    direct_counts = {s.name[6:]: count_records(s) for s in sorted(direct_dir.glob("Split-*"))}
    ours_s, direct_s = min(ours_times), min(direct_times)
    ratio = ours_s / direct_s
    return {
        "upstream_seconds": round(upstream_s, 2),
        "runs": {
            "ours_seconds": [round(t, 2) for t in ours_times],
            "direct_seconds": [round(t, 2) for t in direct_times],
            "load_average_after_each": loads,
        },
        "ours": {"seconds": round(ours_s, 2), "examples": ours_counts},
        "direct_tft": {"seconds": round(direct_s, 2), "examples": direct_counts},
        "same_example_count": ours_counts == direct_counts,
        "same_schema_and_vocabularies": same_graph(graph, direct_dir / "transform_graph"),
        "ratio": round(ratio, 3),
        "target": f"<= {TRANSFORM_TARGET:g}x",
        "pass": ratio <= TRANSFORM_TARGET and ours_counts == direct_counts,
        "transform_graph": str(graph),
        "transformed_examples": str(transformed),
        "train_rows": ours_counts.get("train", 0),
    }


# ---------------------------------------------------------------------------------------------
# Input pipeline vs training step rate (child process)


class _EpochTimer:
    """A tf_keras callback factory: seconds of each epoch."""

    @staticmethod
    def make() -> Any:
        import tf_keras

        class EpochTimer(tf_keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []
                self._t0 = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._t0 = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.seconds.append(time.perf_counter() - self._t0)

        return EpochTimer()


def input_child(
    graph: str, transformed: str, input_batches: int, steps: int, epochs: int
) -> dict[str, Any]:
    logging.disable(logging.WARNING)
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras

    from beam_pipeline.stages.train import TrainSection
    from beam_pipeline.training import modeling

    section = TrainSection(**{k: v for k, v in taxi_train_section().items() if k != "strategy"})
    batch = section.batch_size
    tf_keras.utils.set_random_seed(section.seed)
    module = modeling.load_model_module(section.module)
    tft_output = tft.TFTransformOutput(graph)
    values = modeling.default_values(module, tft_output, section.hyperparameters)
    hp = modeling.hyperparameters(values)
    with tf.distribute.get_strategy().scope():  # the train stage's `default` strategy
        model = module.build(hp, tft_output)
    keys = list(model.input_names)
    pattern = modeling.examples_pattern(transformed, "train")

    def dataset() -> tf.data.Dataset:
        return modeling.make_dataset(
            pattern,
            tft_output,
            module.label_key,
            batch,
            feature_keys=keys,
            shuffle_buffer=section.shuffle_buffer,
            seed=section.seed,
            cache=section.cache,
        )

    # 1. The input pipeline alone: drain batches, no model, inside a tf.function as model.fit
    # fetches them (and, for reference, from Python with next()). Warm-up batches fill the shuffle
    # buffer and let AUTOTUNE settle; they are not timed. With train.cache, the warm-up is one
    # whole epoch (it fills the cache), so the timed batches are what epochs 2.. see.
    warm = max(20, input_batches // 10)
    if section.cache:
        files = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), "GZIP")
        rows = int(files.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
        warm = rows // batch + 1

    @tf.function
    def drain(iterator: Any, n: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0, tf.int64)
        for _ in tf.range(n):
            _, label = next(iterator)
            total += tf.size(label, out_type=tf.int64)
        return total

    say(f"input pipeline alone: {warm} warm-up + {input_batches} batches of {batch} ...")
    it = iter(dataset())
    drain(it, tf.constant(warm))
    load_before = load()
    t0 = time.perf_counter()
    drained = int(drain(it, tf.constant(input_batches)))
    input_s = time.perf_counter() - t0
    input_eps = drained / input_s
    del it
    it = iter(dataset())
    for _ in range(warm):
        next(it)
    t0 = time.perf_counter()
    for _ in range(input_batches):
        next(it)
    python_eps = input_batches * batch / (time.perf_counter() - t0)
    del it

    # 2. model.fit on the same input, as the train stage calls it (no validation or callbacks
    # beyond the timer). Epoch 1 (tracing, shuffle-buffer fill) is excluded.
    say(f"model.fit on the input pipeline: {epochs} epochs x {steps} steps ...")
    timer = _EpochTimer.make()
    model.fit(dataset(), epochs=epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    fit_s = sum(timer.seconds[1:])
    fit_eps = (epochs - 1) * steps * batch / fit_s

    # 3. model.fit on batches held in memory: the model's own step rate (no input cost).
    say(f"model.fit on in-memory batches: {epochs} epochs x {steps} steps ...")
    cached = dataset().take(16).cache().repeat()
    timer2 = _EpochTimer.make()
    model.fit(cached, epochs=epochs, steps_per_epoch=steps, callbacks=[timer2], verbose=0)
    mem_s = sum(timer2.seconds[1:])
    mem_eps = (epochs - 1) * steps * batch / mem_s

    step_eps = max(fit_eps, mem_eps)
    ratio = input_eps / step_eps
    return {
        "batch_size": batch,
        "hyperparameters": dict(hp.values),
        "input": {
            "batches": input_batches,
            "warmup_batches": warm,
            "seconds": round(input_s, 2),
            "examples_per_s": round(input_eps),
            "examples_per_s_python_next": round(python_eps),
        },
        "fit_on_input": {
            "steps_timed": (epochs - 1) * steps,
            "epoch_seconds": [round(t, 2) for t in timer.seconds],
            "examples_per_s": round(fit_eps),
            "steps_per_s": round(fit_eps / batch, 1),
        },
        "fit_in_memory": {
            "steps_timed": (epochs - 1) * steps,
            "epoch_seconds": [round(t, 2) for t in timer2.seconds],
            "examples_per_s": round(mem_eps),
            "steps_per_s": round(mem_eps / batch, 1),
        },
        "step_examples_per_s": round(step_eps),
        "ratio": round(ratio, 2),
        "ratio_vs_fit_on_input": round(input_eps / fit_eps, 2),
        "ratio_vs_fit_in_memory": round(input_eps / mem_eps, 2),
        "load_average": {"before_input": load_before, "after": load()},
        "target": f">= {INPUT_TARGET:g}x",
        "pass": ratio >= INPUT_TARGET,
    }


# ---------------------------------------------------------------------------------------------


def child(args: list[str]) -> dict[str, Any]:
    """Run this script in a subprocess; its result is the last stdout line (JSON)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    lines = (proc.stdout or "").strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise SystemExit(f"bench: child {args[0]} failed ({proc.returncode})")
    result = json.loads(lines[-1])
    result["child_seconds"] = round(time.perf_counter() - t0, 1)
    return result


def finish(result: dict[str, Any]) -> None:
    """Print the result and leave without running TF/Beam's atexit teardown (it can crash)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def summary(results: dict[str, Any]) -> str:
    lines = [
        f"benchmark (train): {results['rows']:,} rows, {results['machine']}",
        f"load average (1/5/15 min): start {results['load_average']['start']}, "
        f"end {results['load_average']['end']}",
        "",
    ]
    row = "{:<46} {:>12} {:>12} {:>9}  {}"
    lines.append(row.format("", "ours", "reference", "ratio", "target"))
    if "transform" in results:
        t = results["transform"]
        lines.append(
            row.format(
                "transform seconds (ref: tf.Transform direct)",
                f"{t['ours']['seconds']:.1f}",
                f"{t['direct_tft']['seconds']:.1f}",
                f"{t['ratio']:.2f}x",
                f"{t['target']:<9} {'PASS' if t['pass'] else 'MISS'}"
                + ("" if t["same_example_count"] else "  COUNTS DIFFER")
                + ("" if t["same_schema_and_vocabularies"] else "  GRAPHS DIFFER"),
            )
        )
        lines.append(
            f"  (examples {t['ours']['examples']} / {t['direct_tft']['examples']}; "
            f"ingest..validate untimed {t['upstream_seconds']:.1f} s)"
        )
    if "input" in results:
        r = results["input"]
        lines.append(
            row.format(
                "input examples/s (ref: training examples/s)",
                f"{r['input']['examples_per_s']:,}",
                f"{r['step_examples_per_s']:,}",
                f"{r['ratio']:.1f}x",
                f"{r['target']:<9} {'PASS' if r['pass'] else 'MISS'}",
            )
        )
        lines.append(
            f"  (model.fit on the input pipeline {r['fit_on_input']['examples_per_s']:,} ex/s "
            f"= {r['fit_on_input']['steps_per_s']} steps/s; on in-memory batches "
            f"{r['fit_in_memory']['examples_per_s']:,} ex/s; batch {r['batch_size']})"
        )
        lines.append(
            f"  (input iterated from Python with next(): "
            f"{r['input']['examples_per_s_python_next']:,} ex/s)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("what", nargs="?", default="all", choices=["all", "_transform", "_input"])
    ap.add_argument("params", nargs="*", help=argparse.SUPPRESS)  # for the children
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows to generate (1,000,000)")
    ap.add_argument("--quick", action="store_true", help="100,000 rows and fewer steps")
    ap.add_argument("--workdir", type=Path, default=REPO / "bench", help="work folder (bench/)")
    ap.add_argument(
        "--repeat", type=int, default=1, help="transform runs per side, alternating; keep the best"
    )
    ap.add_argument("--steps", type=int, default=None, help="train steps per epoch (500)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs; the first is not timed (3)")
    ap.add_argument("--input-batches", type=int, default=None, help="batches timed (2,000)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rows = 100_000 if args.quick else args.rows
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    steps = args.steps or (100 if args.quick else 500)
    batches = args.input_batches or (300 if args.quick else 2000)

    if args.what == "_transform":
        finish(transform_child(workdir, rows, args.repeat))
    if args.what == "_input":
        graph, transformed = args.params
        finish(input_child(graph, transformed, batches, steps, args.epochs))

    results: dict[str, Any] = {
        "rows": rows,
        "seed": SEED,
        "repeat": args.repeat,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load_average": {"start": load()},
    }
    common = ["--rows", str(rows), "--workdir", str(workdir)]
    results["transform"] = child(["_transform", *common, "--repeat", str(args.repeat)])
    t = results["transform"]
    results["input"] = child(
        [
            "_input",
            t["transform_graph"],
            t["transformed_examples"],
            "--steps",
            str(steps),
            "--epochs",
            str(args.epochs),
            "--input-batches",
            str(batches),
        ]
    )
    results["load_average"]["end"] = load()
    text = summary(results)
    print("\n" + text)
    out = workdir / "bench-train-results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
