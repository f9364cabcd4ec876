"""Missing labels are never filled: rows without a label are dropped and counted (issue 10, 5).

A row is labeled when every raw label column (a transform module's ``RAW_LABEL_KEYS``) holds a
value. Used by transform (training and its analyzers see labeled rows only) and evaluate (metrics
are over labeled rows only); both count what they drop, and a split with no labeled row at all is
a stage error whatever the validation gate says.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def labeled(batch: pa.RecordBatch, keys: Sequence[str]) -> np.ndarray:
    """A boolean mask: rows where every column of ``keys`` holds a value (not null, not [])."""
    mask = np.ones(batch.num_rows, dtype=bool)
    for key in keys:
        if key not in batch.schema.names:
            return np.zeros(batch.num_rows, dtype=bool)  # absent column: no row has the label
        column = batch.column(key)
        present = pc.is_valid(column)
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            present = pc.and_(present, pc.greater(pc.list_value_length(column), 0))
        mask &= present.to_numpy(zero_copy_only=False).astype(bool)
    return mask


def no_label_message(stage: str, split: str, keys: Sequence[str], rows: int) -> str:
    where = f"all {rows:,} rows" if rows else "every row (no row has the column)"
    return (
        f"{stage}: the label {list(keys)} is missing in {where} of split {split!r}; "
        "a missing label is never filled: fix the data (the validation gate does not decide this)"
    )
