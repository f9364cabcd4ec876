"""Generate a large taxi CSV from the bundled sample (rows drawn with a fixed seed).

.venv/bin/python scripts/gen_taxi.py --rows 1000000 --out bench/taxi-1m/data.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "chicago_taxi" / "data.csv"


def generate(rows: int, out: Path, seed: int = 42) -> Path:
    """Write `rows` data rows drawn from the sample; returns the path. Skips if already there."""
    header, *lines = SAMPLE.read_text().splitlines()
    if out.exists() and sum(1 for _ in out.open()) == rows + 1:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = np.array(lines, dtype=object)
    with out.open("w") as f:
        f.write(header + "\n")
        step = 200_000
        for start in range(0, rows, step):
            picked = pool[rng.integers(0, len(pool), size=min(step, rows - start))]
            f.write("\n".join(picked) + "\n")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench/taxi-1m/data.csv"))
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    print(generate(a.rows, a.out, a.seed))
