"""Benchmark sliced evaluation metrics against unsliced, interleaved.

    ./scripts/bench evaluate [--rows 1000000] [--slices 150] [--batch-size 16384] [--rounds 5]

Times what the evaluate stage does per record batch besides running the model: slice keys from
the Arrow feature columns (`beam_pipeline.evaluation.slice_keys`, with a `SliceMemo` kept from
batch to batch, as the stage's DoFn keeps one) and the metric accumulator
(`MetricsAccumulator.add` then `result`, binary, 10,000 AUC buckets), over generated rows with
generated predictions, once unsliced (Overall only) and once with `--slices` slices (one feature
with that many values, ~3 % of rows missing it), in record batches of `--batch-size` rows (the
stage reads 16,384 at a time). The two alternate for `--rounds` rounds; min and median of each,
and their ratios, with the load average. Target: sliced <= 2x unsliced (medians). Prints one
JSON line; exits 0 even when the target is missed (it says PASS or MISS).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beam_pipeline.evaluation import OVERALL, MetricsAccumulator, SliceMemo, slice_keys  # noqa: E402

TARGET = 2.0


def batches(rows: int, slices: int, size: int, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    out = []
    names = np.array([f"v{i}".encode() for i in range(slices)], dtype=object)
    for start in range(0, rows, size):
        n = min(size, rows - start)
        y = rng.integers(0, 2, n).astype(np.float64)
        p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).astype(np.float32)[:, None]
        values = [[v] if rng.random() > 0.03 else [] for v in names[rng.integers(0, slices, n)]]
        column = pa.array(values, pa.large_list(pa.binary()))
        out.append((pa.RecordBatch.from_arrays([column], names=["city"]), y, p))
    return out


def timed(data: list[tuple], specs: list[tuple[str, ...]]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    acc = MetricsAccumulator("binary", buckets=10_000)
    memo = SliceMemo()  # as the evaluate stage keeps one per DoFn instance
    for batch, y, p in data:
        acc.add(y, p, [slice_keys(batch, spec, memo=memo) for spec in specs])
    result = acc.result()
    return time.perf_counter() - t0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16_384)  # evaluate.READ_BATCH
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = batches(args.rows, args.slices, args.batch_size)
    timed(data[:5], [("city",)])  # warm up
    unsliced, sliced = [], []
    for _ in range(max(args.rounds, 1)):
        seconds, plain = timed(data, [])
        unsliced.append(seconds)
        seconds, result = timed(data, [("city",)])
        sliced.append(seconds)
        for metric, value in plain[OVERALL].items():  # sums in another order: rounding only
            assert math.isclose(result[OVERALL][metric], value, rel_tol=1e-9), metric
    ratio = statistics.median(sliced) / statistics.median(unsliced)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "slices": len(result) - 1,
                "batch_size": args.batch_size,
                "rounds": len(sliced),
                "unsliced_s": {
                    "min": round(min(unsliced), 3),
                    "median": round(statistics.median(unsliced), 3),
                },
                "sliced_s": {
                    "min": round(min(sliced), 3),
                    "median": round(statistics.median(sliced), 3),
                },
                "ratio_of_medians": round(ratio, 2),
                "ratio_of_mins": round(min(sliced) / min(unsliced), 2),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "target": f"<= {TARGET}x",
                "verdict": "PASS" if ratio <= TARGET else "MISS",
            }
        )
    )


if __name__ == "__main__":
    main()
