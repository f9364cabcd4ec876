"""Benchmark: a model's fixed costs in train (first epoch, export) with and without autograph
converting tf_keras and tf.Transform
(`beam_pipeline.training.modeling.exempt_libraries_from_autograph`).

    .venv/bin/python scripts/bench_trace.py configs/taxi.yaml [--steps 40] [--batch-size 256]
    ./scripts/bench trace CONFIG [...]

Needs a completed transform in the config's pipeline (run it first, `--to transform` is enough).
Each variant runs in its own fresh process (autograph's cache is per process): build the model of
`train.module` at its default hyperparameters, fit one epoch of ``--steps`` steps (the first,
tracing epoch), a second epoch (steady state, the baseline), build the export signatures and save
the SavedModel as train does. Prints one JSON object with both variants and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def child(config_file: str, exempt: bool, steps: int, batch_size: int, out: str) -> None:
    import tempfile

    import tensorflow_transform as tft

    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.stages.train import export_signatures
    from beam_pipeline.training import modeling

    config = load(config_file)
    outputs = Store(config, create=False).latest_outputs("transform", required=True)
    if exempt:
        modeling.exempt_libraries_from_autograph()
    section = config.section("train")
    module = modeling.load_model_module(section.module)
    graph = outputs["transform_graph"]
    tft_output = tft.TFTransformOutput(graph.uri)
    model = module.build(modeling.hyperparameters({}, section.hyperparameters), tft_output)
    train, evaluation = modeling.train_eval_datasets(
        outputs["transformed_examples"],
        tft_output,
        module.label_key,
        batch_size,
        eval_steps=5,
        feature_keys=list(model.input_names),
    )
    times = {}
    t0 = time.time()
    model.fit(train, validation_data=evaluation, epochs=1, steps_per_epoch=steps, verbose=0)
    times["first_epoch_s"] = time.time() - t0
    t0 = time.time()
    model.fit(train, validation_data=evaluation, epochs=1, steps_per_epoch=steps, verbose=0)
    times["second_epoch_s"] = time.time() - t0
    t0 = time.time()
    signatures = export_signatures(model, tft_output, list(graph.properties["raw_label_keys"]))
    times["signatures_s"] = time.time() - t0
    t0 = time.time()
    with tempfile.TemporaryDirectory() as folder:
        model.save(folder, include_optimizer=False, signatures=signatures, save_format="tf")
        times["save_with_traces_s"] = time.time() - t0
    t0 = time.time()
    with tempfile.TemporaryDirectory() as folder:
        model.save(
            folder,
            include_optimizer=False,
            signatures=signatures,
            save_format="tf",
            save_traces=False,
        )
        times["save_s"] = time.time() - t0
    Path(out).write_text(json.dumps({k: round(v, 2) for k, v in times.items()}))
    sys.stdout.flush()
    os._exit(0)  # tf.Transform may crash at interpreter exit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=40, help="steps per epoch (40)")
    ap.add_argument("--batch-size", type=int, default=256, help="batch size (256)")
    ap.add_argument("--child", choices=["exempt", "convert"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.config, args.child == "exempt", args.steps, args.batch_size, args.out)
    results = {}
    for variant in ("convert", "exempt"):  # the library default first: the baseline
        out = Path(f"/tmp/bench-trace-{os.getpid()}-{variant}.json")
        cmd = [sys.executable, __file__, args.config, "--child", variant, "--out", str(out)]
        cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        subprocess.run(cmd, check=True, cwd=REPO)
        results[variant] = json.loads(out.read_text())
        out.unlink()
    before, after = results["convert"], results["exempt"]
    results["first_epoch_speedup"] = round(before["first_epoch_s"] / after["first_epoch_s"], 2)
    results["signatures_speedup"] = round(before["signatures_s"] / after["signatures_s"], 2)
    results["export_before_s"] = round(before["signatures_s"] + before["save_with_traces_s"], 2)
    results["export_after_s"] = round(after["signatures_s"] + after["save_s"], 2)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
