"""What `beam-pipeline init` learns from a sample of the user's data: column roles and the task.

The sample is read by the same readers and typing as ingest (`beam_pipeline.io.readers`), so the
types written into the generated config are the ones ingest would infer. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from beam_pipeline.core.errors import ConfigError, PipelineError

Task = Literal["binary", "multiclass", "regression"]
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl"}
FORMATS.update({".ndjson": "jsonl", ".json": "jsonl"})
SAMPLE_ROWS = 100_000
MAX_CLASSES = 50  # a whole-number label with more distinct values than this is a regression
SLICE_MAX_VALUES = 30  # a categorical column with more values than this is not sliced by
MAX_SLICES = 3


@dataclass(frozen=True)
class Column:
    """One column of the data and what the generated pipeline does with it."""

    name: str
    kind: str  # int | float | string (ingest's types)
    role: Literal["numeric", "categorical", "label", "dropped"]
    feature: str  # the transformed feature's name (a safe tensor name)
    missing: float = 0.0  # fraction of sample rows without a value
    distinct: int = 0
    log_scale: bool = False  # a skewed non-negative number: z-scored on log1p
    why: str = ""  # for a dropped column: the reason, written into the config


@dataclass(frozen=True)
class Profile:
    """The sample's columns, the label and the task."""

    source: str
    format: str
    rows: int
    columns: list[Column]
    label: Column
    task: Task
    classes: list[str | int] = field(default_factory=list)  # classification: the label's values
    positive: str | int | None = None  # binary: the class predicted as 1
    label_mean: float = 0.0  # regression: the label's mean and spread, to scale the output
    label_std: float = 1.0

    def of_role(self, role: str) -> list[Column]:
        return [c for c in self.columns if c.role == role]

    @property
    def slices(self) -> list[str]:
        """Categorical columns with few values (the evaluation slices)."""
        few = [c for c in self.of_role("categorical") if 1 < c.distinct <= SLICE_MAX_VALUES]
        return [c.name for c in few[:MAX_SLICES]]


def data_format(path: str, given: str | None) -> str:
    if given:
        return given
    name = path.lower().removesuffix(".gz")
    suffix = Path(name).suffix
    if suffix not in FORMATS:
        raise ConfigError(
            f"--data: cannot tell the format of {path} from its extension; expected one of "
            f"{sorted(FORMATS)} (or pass --format csv|parquet|jsonl)"
        )
    return FORMATS[suffix]


def read_sample(
    path: str, fmt: str, rows: int = SAMPLE_ROWS
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The first ``rows`` rows, typed as ingest types them, and the column types."""
    from beam_pipeline.io import readers

    files = readers.match_files(path) if any(c in path for c in "*?[") else [path]
    if not files or not Path(files[0]).is_file():
        raise ConfigError(f"--data: no such file: {path}")
    try:
        types = readers.columns_of(files[:1], fmt)
        read = {"csv": readers.read_csv, "jsonl": readers.read_jsonl}.get(fmt)
        names = list(types)
        chunks = (
            read(files[0], names, types) if read else readers.read_parquet(files[0], names, types)
        )
        batches: list[pa.RecordBatch] = []
        count = 0
        for chunk in chunks:
            batches.append(chunk.batch)
            count += chunk.batch.num_rows
            if count >= rows:
                break
    except PipelineError as exc:  # the reader's message names the file and line
        raise ConfigError(f"--data: {exc}") from exc
    except (OSError, ValueError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise ConfigError(f"--data: cannot read {files[0]} as {fmt}: {exc}") from exc
    if not types:
        raise ConfigError(f"--data: {files[0]} has no columns")
    frame = (
        pa.Table.from_batches(batches).to_pandas() if batches else pd.DataFrame(columns=list(types))
    )
    if frame.empty:
        raise ConfigError(f"--data: {files[0]} has no rows (ingest could read none)")
    return frame.head(rows), types


def safe_name(name: str, taken: set[str]) -> str:
    """A tensor name for a column (letters, digits, _; not starting with a digit), unique."""
    base = re.sub(r"\W", "_", name, flags=re.ASCII).strip("_") or "column"
    if base[0].isdigit():
        base = "f_" + base
    out, i = base, 2
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


def profile(source: str, label: str, task: str = "auto", fmt: str | None = None) -> Profile:
    """Read a sample of ``source`` and decide each column's role and the task."""
    fmt = data_format(source, fmt)
    frame, types = read_sample(source, fmt)
    if label not in types:
        raise ConfigError(f"--label: no column {label!r} in {source}; columns are {list(types)}")
    from beam_pipeline.io import names

    if names.unsafe([label]):
        raise ConfigError(f"--label: {names.problem(label, source)}")
    y = frame[label].dropna()
    if y.empty:
        raise ConfigError(f"--label: column {label!r} of {source} has no values in the sample")
    chosen = _task(y, types[label], task)
    taken: set[str] = set()
    label_col = Column(label, types[label], "label", safe_name(label, taken), distinct=y.nunique())
    columns = [label_col]
    for name, kind in types.items():
        if name != label:
            columns.append(_column(frame[name], name, kind, len(frame), taken))
    classes: list[str | int] = []
    positive = None
    mean, std = 0.0, 1.0
    if chosen == "regression":
        values = y.astype(float)
        mean, std = float(values.mean()), float(values.std(ddof=0)) or 1.0
    else:
        classes = sorted(_plain(v) for v in y.unique())
        if chosen == "binary":
            positive = _positive(y, classes)
    return Profile(
        source=source,
        format=fmt,
        rows=len(frame),
        columns=columns,
        label=label_col,
        task=chosen,
        classes=classes,
        positive=positive,
        label_mean=mean,
        label_std=std,
    )


def _plain(value: object) -> str | int:
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)) and float(value).is_integer():
        return int(value)
    return str(value)


def _task(y: pd.Series, kind: str, asked: str) -> Task:
    distinct = y.nunique()
    whole = kind == "int" or (kind == "float" and bool(np.all(np.mod(y.astype(float), 1) == 0)))
    if asked != "auto":
        if asked == "regression" and kind == "string":
            raise ConfigError(
                f"--task regression: the label {y.name!r} holds text values such as "
                f"{str(y.iloc[0])!r}; expected numbers"
            )
        if asked == "binary" and distinct != 2:
            raise ConfigError(
                f"--task binary: the label {y.name!r} has {distinct} distinct values in the "
                "sample; expected exactly 2 (try --task multiclass)"
            )
        if asked in ("binary", "multiclass") and kind == "float" and not whole:
            raise ConfigError(
                f"--task {asked}: the label {y.name!r} holds fractional numbers; expected classes "
                "(text or whole numbers); try --task regression"
            )
        if asked == "multiclass" and distinct > MAX_CLASSES:
            raise ConfigError(
                f"--task multiclass: the label {y.name!r} has {distinct} distinct values; "
                f"expected at most {MAX_CLASSES}"
            )
        return asked  # type: ignore[return-value]
    if distinct < 2:
        raise ConfigError(
            f"--label: column {y.name!r} has one value ({y.iloc[0]!r}) in the sample: nothing to "
            "predict"
        )
    if distinct == 2:
        return "binary"
    if kind == "string":
        if distinct > MAX_CLASSES:
            raise ConfigError(
                f"--label: text column {y.name!r} has {distinct} distinct values; a classifier "
                f"takes at most {MAX_CLASSES} classes"
            )
        return "multiclass"
    if whole and distinct <= min(MAX_CLASSES, max(3, len(y) // 20)):
        return "multiclass"
    return "regression"


POSITIVE_NAMES = ("1", "true", "yes", "y", "t", "positive", "pos")


def _positive(y: pd.Series, classes: list[str | int]) -> str | int:
    """The class predicted as 1: a conventional positive name, else the rarer class."""
    for c in classes:
        if str(c).strip().lower() in POSITIVE_NAMES:
            return c
    counts = y.map(_plain).value_counts()
    return min(classes, key=lambda c: (counts.get(c, 0), str(c)))


def _column(values: pd.Series, name: str, kind: str, rows: int, taken: set[str]) -> Column:
    present = values.dropna()
    missing = 1.0 - len(present) / rows if rows else 0.0
    distinct = int(present.nunique())
    feature = safe_name(name, taken)
    common = dict(name=name, kind=kind, feature=feature, missing=missing, distinct=distinct)
    from beam_pipeline.io import names

    if names.unsafe([name]):
        why = (
            f"TensorFlow cannot take this name; rename it (e.g. {names.suggest(name)!r}) to use it"
        )
        return Column(role="dropped", why=why, **common)
    if distinct <= 1:
        return Column(role="dropped", why="one value in the sample: nothing to learn", **common)
    if kind == "string":
        if rows >= 50 and distinct > 0.9 * len(present):
            return Column(role="dropped", why="a distinct value per row: an identifier", **common)
        return Column(role="categorical", **common)
    numbers = present.astype(float)
    if kind == "int" and rows >= 50 and distinct == len(present) and _is_counter(numbers):
        return Column(role="dropped", why="consecutive distinct integers: a row id", **common)
    skew = float(numbers.skew()) if len(numbers) > 2 else 0.0
    log_scale = bool(numbers.min() >= 0 and math.isfinite(skew) and skew > 2.0)
    return Column(role="numeric", log_scale=log_scale, **common)


def _is_counter(numbers: pd.Series) -> bool:
    ordered = np.sort(numbers.to_numpy())
    return bool(len(ordered) > 1 and np.all(np.diff(ordered) == 1))
