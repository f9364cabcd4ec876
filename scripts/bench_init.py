"""Quality of the model `beam-pipeline init` writes, against gradient-boosted trees on one split.

    ./scripts/bench init [--data gems|diabetes|penguins ...] [--rounds N] [--rows N] [--workdir DIR]

For each data set and round: write the data as a CSV, `init` a pipeline for it, `run` it with
the generated config as it is (tuning included, no --set), then fit scikit-learn's
HistGradientBoostingRegressor (default settings, categorical columns as categories) on the very
rows that ingest put in the train split and score both on the eval split. Prints each round's
RMSE of both and their ratio, then min and median over the rounds, and the load average.

Data sets: ``gems`` (generated gem prices: log-linear in carat, cut, colour and depth, 3 % of
depth missing; a new seed per round), ``diabetes`` (scikit-learn's bundled 442-row diabetes
progression table), ``penguins`` (the bundled penguins file: body mass from the other columns).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def write_data(name: str, folder: Path, rows: int, seed: int) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    if name == "gems":
        from tests.scaffold.datasets import gems

        return gems(path, rows=rows, seed=seed), "price"
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        load_diabetes(as_frame=True).frame.to_csv(path, index=False)
        return path, "target"
    if name == "penguins":
        frame = pd.read_csv(REPO / "data" / "penguins" / "penguins_processed.csv")
        frame["species"] = frame["species"].map({0: "Adelie", 1: "Chinstrap", 2: "Gentoo"})
        frame.to_csv(path, index=False)
        return path, "body_mass_g"
    raise SystemExit(f"unknown data set {name!r}")


def cli(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "beam_pipeline.cli", *args, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not out:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(out[-1])


def read_split(examples_uri: str, split: str) -> pd.DataFrame:
    """The rows ingest wrote to one split (tf.Example records), as a data frame."""
    import tensorflow as tf

    from beam_pipeline.core.artifacts import examples_pattern

    rows = []
    files = tf.io.gfile.glob(examples_pattern(examples_uri, split))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        ex = tf.train.Example.FromString(record)
        row = {}
        for key, feature in ex.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            value = values[0] if values else None
            row[key] = value.decode() if isinstance(value, bytes) else value
        rows.append(row)
    return pd.DataFrame(rows)


def baseline_rmse(train: pd.DataFrame, test: pd.DataFrame, label: str, drop: list[str]) -> float:
    """HistGradientBoostingRegressor (defaults, fixed seed) fit on ``train``, RMSE on ``test``."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    features = [c for c in train.columns if c != label and c not in drop]
    text = [c for c in features if train[c].dtype == object]
    x_train, x_test = train[features].copy(), test[features].copy()
    for c in text:  # categories as integer codes, known from the train split
        cats = pd.Categorical(x_train[c].fillna("")).categories
        x_train[c] = pd.Categorical(x_train[c].fillna(""), categories=cats).codes
        x_test[c] = pd.Categorical(x_test[c].fillna(""), categories=cats).codes
    model = HistGradientBoostingRegressor(
        categorical_features=[features.index(c) for c in text] or None, random_state=0
    )
    model.fit(x_train.astype(float), train[label].astype(float))
    error = model.predict(x_test.astype(float)) - test[label].astype(float)
    return float(np.sqrt(np.mean(error**2)))


def one_round(name: str, work: Path, rows: int, seed: int) -> dict[str, float]:
    folder = work / f"{name}-{seed}"
    data, label = write_data(name, folder / "data", rows, seed)
    written = cli("init", name, "--data", str(data), "--label", label, "--dir", str(folder),
                  "--force")  # fmt: skip
    summary = cli("run", written["config"])
    examples = summary["stages"]["ingest"]["outputs"]["examples"]["uri"]
    drop = [c for c, info in written["columns"].items() if info["role"] == "dropped"]
    train, test = read_split(examples, "train"), read_split(examples, "eval")
    gbt = baseline_rmse(train, test, label, drop)
    ours = summary["metrics"]["rmse"]
    std = float(test[label].astype(float).std(ddof=0))
    return {"init_rmse": ours, "gbt_rmse": gbt, "ratio": ours / gbt, "eval_std": std,
            "eval_rows": len(test)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=["gems", "diabetes", "penguins"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=3000, help="rows of the generated gems data")
    ap.add_argument("--workdir", default=str(REPO / "bench" / "init"))
    args = ap.parse_args()
    work = Path(args.workdir)
    for name in args.data:
        results = []
        for seed in range(args.rounds):  # a fresh pipeline each round (new data for gems)
            r = one_round(name, work, args.rows, seed)
            results.append(r)
            print(
                f"{name} round {seed}: init model RMSE {r['init_rmse']:.4g}, "
                f"HistGradientBoosting RMSE {r['gbt_rmse']:.4g} (ratio {r['ratio']:.3f}; "
                f"eval rows {r['eval_rows']}, label std {r['eval_std']:.4g})",
                flush=True,
            )
        ratios = [r["ratio"] for r in results]
        print(
            f"{name}: init/GBT RMSE ratio min {min(ratios):.3f}, median "
            f"{statistics.median(ratios):.3f} over {len(ratios)} rounds"
        )
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
