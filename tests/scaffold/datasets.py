"""Generated data sets a user might bring: a regression (gem prices) and a binary churn table.

Both have a signal a model can learn, text and numeric columns, missing values and an id column,
so `init` meets what real files hold. Deterministic for a seed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

CUTS = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
COLORS = list("DEFGHIJ")
CONTRACTS = ["month-to-month", "one year", "two year"]


def gems(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """``price`` from carat (log-linear), cut and colour, depth; 3 % of depth missing."""
    rng = np.random.default_rng(seed)
    carat = np.round(rng.lognormal(-0.4, 0.45, rows), 2)
    cut = rng.integers(0, len(CUTS), rows)
    color = rng.integers(0, len(COLORS), rows)
    depth = np.round(rng.normal(61.8, 1.4, rows), 1)
    table = np.round(rng.normal(57.4, 2.2, rows), 0)
    log_price = 8.4 + 1.7 * np.log(carat) + 0.08 * cut - 0.07 * color - 0.03 * (depth - 61.8)
    price = np.round(np.exp(log_price + rng.normal(0, 0.12, rows)), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "carat", "cut", "color", "depth", "table", "price"])
        for i in range(rows):
            d = "" if rng.random() < 0.03 else depth[i]
            w.writerow([i, carat[i], CUTS[cut[i]], COLORS[color[i]], d, table[i], price[i]])
    return path


def churn(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """``churned`` (yes/no) from tenure, monthly charges, contract and support calls."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    monthly = np.round(rng.uniform(20, 120, rows), 2)
    contract = rng.integers(0, len(CONTRACTS), rows)
    calls = rng.poisson(1.5, rows)
    logit = 0.5 - 0.05 * tenure + 0.02 * (monthly - 70) - 1.2 * contract + 0.5 * calls
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["customer", "tenure", "monthly_charges", "contract", "support_calls", "churned"]
        )
        for i in range(rows):
            c = "" if rng.random() < 0.02 else CONTRACTS[contract[i]]
            w.writerow(
                [f"c{i:05d}", tenure[i], monthly[i], c, calls[i], "yes" if churned[i] else "no"]
            )
    return path
