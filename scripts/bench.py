"""Benchmark ingest and statistics on a generated taxi CSV (issue 2, item 9).

    ./scripts/bench                      # all, 1,000,000 rows, work in bench/
    ./scripts/bench ingest --rows 200000
    ./scripts/bench statistics --quick   # 100,000 rows
    ./scripts/bench profile              # cProfile of our ingest stage, top costs

Targets, measured in one run on the same DirectRunner options:
  * ingest: our stage (batched Arrow -> tf.Example) >= 10x the rows/s of a per-row-Python baseline
    that does what TFX's CsvExampleGen does (scripts/bench_baseline.py);
  * ingest peak memory (fresh subprocesses at N/4 and N rows) does not grow with the row count;
  * statistics: our stage <= 1.15x the seconds of calling TFDV directly
    (tfdv.generate_statistics_from_tfrecord per split) on the same TFRecords.

Prints a summary table and writes it as JSON to {workdir}/bench-results.json. Exits 0 even when a
target is missed (each target says PASS or MISS).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # gen_taxi, bench_baseline

SEED = 42
TAXI_CONFIG = REPO / "configs" / "taxi.yaml"
INGEST_TARGET = 10.0  # ours / baseline rows/s, at least
STATS_TARGET = 1.15  # ours / direct seconds, at most
MEMORY_TARGET = 1.25  # peak RSS at N / peak RSS at N/4, at most ("does not grow")

log = logging.getLogger("bench")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)  # progress; results go to stdout


# ---------------------------------------------------------------------------------------------
# Inputs and configs


def data_file(workdir: Path, rows: int) -> Path:
    from gen_taxi import generate

    out = workdir / "data" / f"taxi-{rows}.csv"
    if not out.exists():
        say(f"generating {rows:,} rows -> {out}")
    return generate(rows, out, SEED)


def write_config(
    workdir: Path, name: str, csv_path: Path, sections: dict[str, Any] | None = None
) -> Path:
    """A bench config: the taxi config's ingest and statistics (plus ``sections``, whole) on the
    generated CSV, with a memory metadata store and a fresh root under the workdir."""
    import yaml

    taxi = yaml.safe_load(TAXI_CONFIG.read_text())
    root = workdir / "runs" / name
    shutil.rmtree(root, ignore_errors=True)
    config = {
        "pipeline": {"name": "bench", "root": str(root)},
        "metadata": {"backend": "memory"},
        "beam": taxi.get("beam", {}),
        "ingest": {**taxi["ingest"], "source": str(csv_path)},
        "statistics": taxi.get("statistics", {}),
        **(sections or {}),
    }
    path = workdir / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def stages() -> dict[str, Any]:
    from beam_pipeline.stages import ingest, statistics

    return {"ingest": ingest.STAGE, "statistics": statistics.STAGE}


def run_stage(orch: Any, name: str) -> tuple[float, dict[str, Any]]:
    """Run one stage through the orchestrator; returns (seconds, its result entry)."""
    t0 = time.perf_counter()
    result = orch.run(only=name)
    seconds = time.perf_counter() - t0
    entry = result.stages.get(name, {})
    if result.status != "completed" or entry.get("status") != "completed":
        raise SystemExit(f"bench: our {name} stage did not complete: {result.error}")
    return seconds, entry


def examples_of(orch: Any) -> Any:
    """The Examples artifact the orchestrator's (in-memory) store holds for the last ingest."""
    outs = orch._latest_outputs(orch.stages["ingest"])  # noqa: SLF001 - bench-only introspection
    return outs["ingest.examples"]


# ---------------------------------------------------------------------------------------------
# Ingest: ours vs the per-row baseline


def bench_ingest(
    config_path: Path, csv_path: Path, rows: int, workdir: Path, repeat: int = 1
) -> tuple[dict, Any]:
    import bench_baseline

    from beam_pipeline.core import config as config_mod
    from beam_pipeline.core.orchestrator import Orchestrator
    from beam_pipeline.runners.options import pipeline_options
    from beam_pipeline.stages import ingest

    config = config_mod.load(config_path)
    orch = Orchestrator(config, stages(), use_cache=False)
    section = config.section("ingest")
    files, _ = ingest.resolve_files(section.source, section.span)
    columns = ingest.resolve_columns(section, files)
    keep = [c for c in columns if c not in section.drop]
    out_dir = workdir / "baseline-out"
    ours_times, base_times = [], []
    for i in range(repeat):  # alternate, so that both see the same machine; keep the best
        tag = f" (run {i + 1}/{repeat})" if repeat > 1 else ""
        say(f"ingest (ours): {rows:,} rows{tag} ...")
        ours_times.append(run_stage(orch, "ingest")[0])
        # The baseline types the columns exactly as our ingest did (config types, else inferred).
        shutil.rmtree(out_dir, ignore_errors=True)
        say(f"ingest (per-row baseline): {rows:,} rows{tag} ...")
        t0 = time.perf_counter()
        base = bench_baseline.run(
            str(csv_path),
            str(out_dir),
            list(columns),
            columns,
            keep,
            dict(section.split.ratios),
            pipeline_options(config),
        )
        base_times.append(time.perf_counter() - t0)
    ours_s, base_s = min(ours_times), min(base_times)
    examples = examples_of(orch)
    ours_counts = dict(examples.properties["row_counts"])
    ours_rejected = int(examples.properties.get("rejected", 0))
    base_rejected = base.pop("rejected")

    ours_total = sum(ours_counts.values())
    base_total = sum(base.values())
    ours_rps = ours_total / ours_s
    base_rps = base_total / base_s
    ratio = ours_rps / base_rps
    return {
        "rows": rows,
        "runs": {
            "ours_seconds": [round(t, 2) for t in ours_times],
            "baseline_seconds": [round(t, 2) for t in base_times],
        },
        "ours": {
            "seconds": round(ours_s, 2),
            "rows_per_s": round(ours_rps),
            "examples": ours_total,
            "splits": ours_counts,
            "rejected": ours_rejected,
        },
        "baseline": {
            "seconds": round(base_s, 2),
            "rows_per_s": round(base_rps),
            "examples": base_total,
            "splits": base,
            "rejected": base_rejected,
        },
        "same_example_count": ours_total == base_total,
        "speedup": round(ratio, 2),
        "target": f">= {INGEST_TARGET:g}x",
        "pass": ratio >= INGEST_TARGET and ours_total == base_total,
    }, orch


# ---------------------------------------------------------------------------------------------
# Peak memory of ingest, each in a fresh subprocess


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ingest_child(config_path: Path) -> None:
    """Run our ingest once and print its memory and seconds as JSON, the last line of stdout.

    Importing the stage registry loads TensorFlow and TFDV, whose import-time peak can exceed the
    ingest's, so besides the process high-water mark (ru_maxrss) a sampler thread records the
    peak RSS while the stage runs, next to the RSS it started from; the target compares those.
    """
    import threading

    logging.disable(logging.WARNING)
    from beam_pipeline.core import config as config_mod
    from beam_pipeline.core.orchestrator import Orchestrator
    from beam_pipeline.stages import ingest

    config = config_mod.load(config_path)
    orch = Orchestrator(config, {"ingest": ingest.STAGE}, use_cache=False)
    before = _rss_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    seconds, _ = run_stage(orch, "ingest")
    done.set()
    sampler.join()
    examples = examples_of(orch)
    maxrss = (
        max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        / 1024
    )
    print(
        json.dumps(
            {
                "peak_rss_mb": round(maxrss, 1),
                "rss_before_stage_mb": round(before, 1),
                "peak_rss_during_stage_mb": round(peak[0], 1),
                "seconds": round(seconds, 2),
                "examples": sum(examples.properties["row_counts"].values()),
            }
        )
    )


def bench_memory(workdir: Path, rows: int) -> dict:
    results = {}
    for n in sorted({max(rows // 4, 1), rows}):
        csv_path = data_file(workdir, n)
        config_path = write_config(workdir, f"memory-{n}", csv_path)
        say(f"ingest peak memory: {n:,} rows in a fresh subprocess ...")
        proc = subprocess.run(
            [sys.executable, __file__, "_ingest-child", str(config_path)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"bench: ingest subprocess at {n:,} rows failed ({proc.returncode})")
        results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    small, large = results[min(results)], results[max(results)]
    growth = large["peak_rss_during_stage_mb"] / small["peak_rss_during_stage_mb"]
    return {
        "runs": {str(n): r for n, r in results.items()},
        "growth": round(growth, 3),
        "target": f"peak RSS during ingest at {max(results):,} rows <= {MEMORY_TARGET:g}x "
        f"at {min(results):,}",
        "pass": growth <= MEMORY_TARGET,
    }


# ---------------------------------------------------------------------------------------------
# Statistics: our stage vs TFDV called directly


def bench_statistics(orch: Any, workdir: Path, repeat: int = 1) -> dict:
    import tensorflow_data_validation as tfdv

    from beam_pipeline.core import artifacts
    from beam_pipeline.runners.options import pipeline_options
    from beam_pipeline.stages import statistics

    examples = examples_of(orch)
    options = statistics.stats_options(orch.config.section("statistics"))
    out_dir = workdir / "tfdv-direct"
    ours_times, direct_times = [], []
    for i in range(repeat):  # alternate, keep the best of each
        tag = f" (run {i + 1}/{repeat})" if repeat > 1 else ""
        say(f"statistics (ours){tag} ...")
        seconds, entry = run_stage(orch, "statistics")
        ours_times.append(seconds)
        # What a user calls directly: one generate_statistics_from_tfrecord per split, with the
        # StatsOptions our section maps to (the defaults) and the same Beam options.
        shutil.rmtree(out_dir, ignore_errors=True)
        say(f"statistics (tfdv.generate_statistics_from_tfrecord per split){tag} ...")
        direct_counts = {}
        t0 = time.perf_counter()
        for split in examples.splits:
            stats = tfdv.generate_statistics_from_tfrecord(
                data_location=str(examples.split_dir(split) / artifacts.EXAMPLES_GLOB),
                output_path=str(out_dir / split / "stats.tfrecord"),
                stats_options=options,
                pipeline_options=pipeline_options(orch.config),
            )
            direct_counts[split] = statistics.num_examples(stats)
        direct_times.append(time.perf_counter() - t0)
    ours_s, direct_s = min(ours_times), min(direct_times)
    stats_uri = Path(entry["outputs"]["statistics"]["uri"])
    ours_counts = {
        s: statistics.num_examples(
            tfdv.load_stats_binary(str(stats_uri / f"Split-{s}" / artifacts.STATS_FILE))
        )
        for s in examples.splits
    }

    ratio = ours_s / direct_s
    return {
        "runs": {
            "ours_seconds": [round(t, 2) for t in ours_times],
            "direct_seconds": [round(t, 2) for t in direct_times],
        },
        "ours": {"seconds": round(ours_s, 2), "examples": ours_counts},
        "direct_tfdv": {"seconds": round(direct_s, 2), "examples": direct_counts},
        "same_example_count": ours_counts == direct_counts,
        "ratio": round(ratio, 3),
        "target": f"<= {STATS_TARGET:g}x",
        "pass": ratio <= STATS_TARGET and ours_counts == direct_counts,
    }


# ---------------------------------------------------------------------------------------------
# Profile


def profile_ingest(workdir: Path, rows: int, top: int = 30) -> None:
    import cProfile
    import pstats

    from beam_pipeline.core import config as config_mod
    from beam_pipeline.core.orchestrator import Orchestrator

    csv_path = data_file(workdir, rows)
    warm_up(workdir)
    config = config_mod.load(write_config(workdir, f"profile-{rows}", csv_path))
    orch = Orchestrator(config, stages(), use_cache=False)
    prof = cProfile.Profile()
    prof.enable()
    seconds, _ = run_stage(orch, "ingest")
    prof.disable()
    out = workdir / f"ingest-{rows}.prof"
    prof.dump_stats(str(out))
    say(f"ingest of {rows:,} rows: {seconds:.1f} s under cProfile; profile in {out}")
    for key in ("tottime", "cumulative"):
        say(f"\n--- top {top} by {key} ---")
        pstats.Stats(prof, stream=sys.stdout).strip_dirs().sort_stats(key).print_stats(top)


# ---------------------------------------------------------------------------------------------


def warm_up(workdir: Path) -> None:
    """Pay the one-time costs (TF/tfx_bsl/TFDV imports, Beam start-up) before anything is timed."""
    import bench_baseline
    import tensorflow_data_validation as tfdv

    from beam_pipeline.core import artifacts
    from beam_pipeline.core import config as config_mod
    from beam_pipeline.core.orchestrator import Orchestrator
    from beam_pipeline.runners.options import pipeline_options
    from beam_pipeline.stages import ingest

    say("warming up (2,000 rows, untimed) ...")
    csv_path = data_file(workdir, 2000)
    config = config_mod.load(write_config(workdir, "warmup", csv_path))
    orch = Orchestrator(config, stages(), use_cache=False)
    run_stage(orch, "ingest")
    run_stage(orch, "statistics")
    section = config.section("ingest")
    columns = ingest.resolve_columns(section, [str(csv_path)])
    keep = [c for c in columns if c not in section.drop]
    bench_baseline.run(
        str(csv_path),
        str(workdir / "runs" / "warmup" / "baseline"),
        list(columns),
        columns,
        keep,
        dict(section.split.ratios),
        pipeline_options(config),
    )
    examples = examples_of(orch)
    tfdv.generate_statistics_from_tfrecord(
        str(examples.split_dir("train") / artifacts.EXAMPLES_GLOB),
        str(workdir / "runs" / "warmup" / "tfdv" / "stats.tfrecord"),
        pipeline_options=pipeline_options(config),
    )


def summary(results: dict) -> str:
    lines = [f"benchmark: {results['rows']:,} rows, {results['machine']}", ""]
    row = "{:<44} {:>14} {:>14} {:>10}  {}"
    lines.append(row.format("", "ours", "reference", "ratio", "target"))
    if "ingest" in results:
        r = results["ingest"]
        lines.append(
            row.format(
                "ingest rows/s (ref: per-row baseline)",
                f"{r['ours']['rows_per_s']:,}",
                f"{r['baseline']['rows_per_s']:,}",
                f"{r['speedup']:.1f}x",
                f"{r['target']:<12} {'PASS' if r['pass'] else 'MISS'}",
            )
        )
        lines.append(
            row.format(
                "ingest seconds",
                f"{r['ours']['seconds']:.1f}",
                f"{r['baseline']['seconds']:.1f}",
                "",
                f"examples {r['ours']['examples']:,} / {r['baseline']['examples']:,}"
                + ("" if r["same_example_count"] else "  COUNTS DIFFER"),
            )
        )
    if "memory" in results:
        m = results["memory"]
        (small, a), (large, b) = sorted(m["runs"].items(), key=lambda kv: int(kv[0]))
        lines.append(
            row.format(
                f"ingest peak RSS MB ({int(small):,} -> {int(large):,} rows)",
                f"{a['peak_rss_during_stage_mb']:,.0f} -> {b['peak_rss_during_stage_mb']:,.0f}",
                "",
                f"{m['growth']:.2f}x",
                f"<= {MEMORY_TARGET:g}x       {'PASS' if m['pass'] else 'MISS'}",
            )
        )
        lines.append(
            f"  (RSS before the stage {a['rss_before_stage_mb']:,.0f} / "
            f"{b['rss_before_stage_mb']:,.0f} MB; process high-water mark incl. imports "
            f"{a['peak_rss_mb']:,.0f} / {b['peak_rss_mb']:,.0f} MB)"
        )
    if "statistics" in results:
        s = results["statistics"]
        lines.append(
            row.format(
                "statistics seconds (ref: TFDV direct)",
                f"{s['ours']['seconds']:.1f}",
                f"{s['direct_tfdv']['seconds']:.1f}",
                f"{s['ratio']:.2f}x",
                f"{s['target']:<12} {'PASS' if s['pass'] else 'MISS'}"
                + ("" if s["same_example_count"] else "  COUNTS DIFFER"),
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["all", "ingest", "statistics", "profile", "_ingest-child"],
    )
    ap.add_argument("config", nargs="?", help=argparse.SUPPRESS)  # for _ingest-child
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows to generate (1,000,000)")
    ap.add_argument("--quick", action="store_true", help="100,000 rows: a smoke test")
    ap.add_argument("--workdir", type=Path, default=REPO / "bench", help="work folder (bench/)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="time each side this many times, alternating, and keep the best (1)",
    )
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.what == "_ingest-child":
        ingest_child(Path(args.config))
        return 0
    rows = 100_000 if args.quick else args.rows
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.what == "profile":
        profile_ingest(workdir, rows)
        return 0

    results: dict[str, Any] = {
        "rows": rows,
        "seed": SEED,
        "what": args.what,
        "repeat": args.repeat,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }
    csv_path = data_file(workdir, rows)
    warm_up(workdir)
    config_path = write_config(workdir, f"bench-{rows}", csv_path)
    if args.what in ("all", "ingest"):
        results["ingest"], orch = bench_ingest(config_path, csv_path, rows, workdir, args.repeat)
    else:  # statistics only: our ingest makes the Examples (untimed)
        from beam_pipeline.core import config as config_mod
        from beam_pipeline.core.orchestrator import Orchestrator

        say(f"ingest (ours, untimed): {rows:,} rows ...")
        orch = Orchestrator(config_mod.load(config_path), stages(), use_cache=False)
        run_stage(orch, "ingest")
    if args.what in ("all", "statistics"):
        results["statistics"] = bench_statistics(orch, workdir, args.repeat)
    if args.what in ("all", "ingest") and not args.no_memory:
        results["memory"] = bench_memory(workdir, rows)

    text = summary(results)
    print("\n" + text, flush=True)  # the results: stdout
    out = workdir / "bench-results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    say(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
