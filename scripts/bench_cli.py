"""Wall time of the read-only commands (issue 10, item 7): `--help`, `runs`, `models`,
`lineage --model 1` on a pipeline with a trained model, each in a fresh process.

    ./scripts/bench cli [CONFIG] [--repeat N]

Without CONFIG, trains a small taxi pipeline once into bench/cli/ (a few minutes; kept). Target:
each command under 1.5 s wall. Baseline, measured in the same run: a process that imports every
stage module, which is what loading a config cost before the config sections moved out of the
stages. Prints one line per command; exits 0 even when the target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 1.5


def _wall(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return statistics.median(times)


def _small_pipeline(work: Path) -> Path:
    config = work / "taxi.yaml"
    if (work / "root" / "metadata.sqlite").is_file():
        return config
    work.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((REPO / "configs" / "taxi.yaml").read_text())
    base = REPO / "configs"
    data["pipeline"]["root"] = str(work / "root")
    data["ingest"]["source"] = str((base / data["ingest"]["source"]).resolve())
    for section in ("transform", "train"):
        data[section]["module"] = str((base / data[section]["module"]).resolve())
    if data.get("schema", {}).get("path"):
        data["schema"]["path"] = str((base / data["schema"]["path"]).resolve())
    data["tune"] = {**data.get("tune", {}), "enabled": False}
    data["train"].update(epochs=1, steps_per_epoch=20)
    data["push"] = {"serving_dir": str(work / "serving")}
    config.write_text(yaml.safe_dump(data))
    print(f"training a small pipeline into {work} (once)", flush=True)
    cli = [sys.executable, "-m", "beam_pipeline.cli"]
    subprocess.run([*cli, "run", str(config)], cwd=REPO, check=True)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", help="a config whose pipeline has a model")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (median)")
    parser.add_argument("--workdir", default=str(REPO / "bench" / "cli"))
    args = parser.parse_args()
    config = args.config or str(_small_pipeline(Path(args.workdir)))
    cli = [sys.executable, "-m", "beam_pipeline.cli"]
    baseline = _wall([sys.executable, "-c", "import beam_pipeline.stages as s; s.load_stages()"], 1)
    print(f"baseline: importing every stage module {baseline:.2f} s")
    print(f"{'command':28} {'wall (median)':>14}  target < {TARGET_S} s")
    for name, extra in (
        ("--help", ["--help"]),
        ("runs", ["runs", config]),
        ("models", ["models", config]),
        ("lineage --model 1", ["lineage", config, "--model", "1"]),
    ):
        wall = _wall([*cli, *extra], args.repeat)
        verdict = "PASS" if wall < TARGET_S else "MISS"
        print(f"{name:28} {wall:13.2f}s  {verdict}  ({baseline / wall:.0f}x under the baseline)")


if __name__ == "__main__":
    main()
