"""Traffic for the monitor tests, made from the bundled taxi data with a fixed seed.

`shifted_rows` changes the distribution the way a market changes: mostly card payments and
fares scaled up (tips unchanged, so fewer riders tip over 20 % of the fare: the label shifts
too). `write_segments` writes prediction-log segments in the contract's format (the one
``beam-pipeline serve`` writes): ``part-<UTC time>-<pid>-<seq>.jsonl`` with ``R/i`` request ids.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
TAXI_CSV = ROOT / "data" / "chicago_taxi" / "data.csv"
LABEL = "tips"


def taxi_rows(n: int | None = None, seed: int = 11) -> pd.DataFrame:
    frame = pd.read_csv(TAXI_CSV, dtype={"payment_type": object, "company": object})
    if n is not None:
        frame = frame.sample(n=n, random_state=seed).reset_index(drop=True)
    return frame


def shifted_rows(
    n: int, seed: int = 5, fare_scale: float = 1.8, scaled: tuple[str, ...] = ("fare",)
) -> pd.DataFrame:
    """Rows resampled to 85 % card payments, with the ``scaled`` numeric columns (not tips)
    multiplied by ``fare_scale`` (integer columns stay integers).

    Rows missing a value that is missing in only a handful of the bundled rows (2 to 6 of 15,002:
    pickup area and coordinates, trip_seconds) are left out: resampled with replacement, one such
    row lands several times in the retraining span, and the span's own inferred schema (schemas
    are not yet carried across spans) calls the feature required when its copies all fall in eval.
    """
    frame = taxi_rows()
    rare = ["pickup_community_area", "pickup_latitude", "pickup_longitude", "trip_seconds"]
    frame = frame.dropna(subset=rare)
    rng = np.random.default_rng(seed)
    card = frame[frame.payment_type == "Credit Card"]
    other = frame[frame.payment_type != "Credit Card"]
    n_card = int(n * 0.85)
    picked = pd.concat(
        [
            card.iloc[rng.integers(0, len(card), n_card)],
            other.iloc[rng.integers(0, len(other), n - n_card)],
        ]
    ).sample(frac=1.0, random_state=seed)
    picked = picked.reset_index(drop=True)
    for name in scaled:
        whole = bool(frame[name].dropna().mod(1).eq(0).all())
        digits = 0 if whole else 2
        picked[name] = (picked[name] * fare_scale).round(digits)
    return picked


def scored(frame: pd.DataFrame, saved_model: str, features: list[str]) -> np.ndarray:
    """The model's predictions through its ``serving_raw`` signature (strings, "" = missing)."""
    import tensorflow as tf

    fn = tf.saved_model.load(saved_model).signatures["serving_raw"]
    inputs = {}
    for name in features:
        col = frame[name]
        text = col.map(_text)
        inputs[name] = tf.constant(text.tolist())
    return fn(**inputs)["predictions"].numpy().reshape(len(frame), -1)


def _text(v: Any) -> str:
    if pd.isna(v):
        return ""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def records(
    frame: pd.DataFrame,
    predictions: np.ndarray,
    features: list[str],
    version: int,
    start: dt.datetime,
    request: str = "req",
    rows_per_request: int = 50,
) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(
        frame[features].astype(object).where(frame[features].notna(), None).to_dict("records")
    ):
        when = start + dt.timedelta(milliseconds=100 * i)
        pred = predictions[i]
        out.append(
            {
                "request_id": f"{request}{i // rows_per_request}/{i % rows_per_request}",
                "model_name": "taxi",
                "model_version": version,
                "time": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "features": row,
                "prediction": float(pred[0]) if len(pred) == 1 else [float(p) for p in pred],
            }
        )
    return out


def write_segments(folder: Path, recs: list[dict[str, Any]], per_segment: int = 1000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seq, start in enumerate(range(0, len(recs), per_segment)):
        part = recs[start : start + per_segment]
        opened = dt.datetime.strptime(part[0]["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        name = f"part-{opened.strftime('%Y%m%dT%H%M%S%f')}-4242-{seq:06d}.jsonl"
        path = folder / name
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
        paths.append(path)
    return paths


def write_feedback(
    path: Path, recs: list[dict[str, Any]], frame: pd.DataFrame, fraction: float, seed: int = 3
) -> list[dict[str, Any]]:
    """Labels (the ``tips`` column) for a random fraction of the records, as a feedback segment."""
    rng = np.random.default_rng(seed)
    chosen = np.flatnonzero(rng.random(len(recs)) < fraction)
    out = [
        {
            "request_id": recs[i]["request_id"],
            "label": float(frame[LABEL].iloc[i]),
            "time": recs[i]["time"],
        }
        for i in chosen
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return out
