"""A model's ``serving_raw`` signature called with a batch's string inputs in one buffer.

The signature takes one ``[rows]`` string tensor per raw feature. Built one by one (two eager
TensorFlow ops per column per batch from Arrow, or a ``tf.constant`` per column from Python
values) they cost about as much as the model on small batches. Here every column's values go
end to end into one buffer with their offsets (`Packed`), and the tensors are cut from it inside
the same graph call as the model (`PackedSignature`). `score` packs Arrow columns
(`pack_arrays`), `serve` the values its row check made (`pack_values`).

Importing this module does not import TensorFlow; `PackedSignature` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipeline.io.predictions import string_buffers


@dataclass(frozen=True)
class Packed:
    """A batch's string inputs as one buffer: the values of every column end to end (column
    after column, ``rows`` each) and their ``[columns * rows + 1]`` int32 offsets into ``blob``."""

    blob: bytes
    offsets: np.ndarray
    rows: int


def pack_arrays(columns: list[pa.Array]) -> Packed:
    """Packs Arrow string columns of equal length (a missing value is ``""``): one Arrow
    concatenation and one copy per batch, whatever the number of columns."""
    rows = len(columns[0]) if columns else 0
    joined = pa.concat_arrays([pc.fill_null(c, "") if c.null_count else c for c in columns])
    offsets, data = string_buffers(joined)
    return Packed(data.tobytes(), offsets.astype(np.int32, copy=False), rows)


def pack_values(columns: list[np.ndarray]) -> Packed:
    """Packs columns of text values (``str`` or ``bytes``) of equal length. A column of ASCII
    ``str`` is joined and encoded once (its byte lengths are its character lengths); other text
    is encoded value by value."""
    rows = len(columns[0]) if columns else 0
    parts: list[bytes] = []
    lengths: list[np.ndarray] = []
    for column in columns:
        values = column.tolist()
        if values and type(values[0]) is str:
            try:
                text = "".join(values).encode("ascii")
            except (TypeError, UnicodeEncodeError):  # non-ASCII (or mixed): value by value
                values = [v.encode() if type(v) is str else v for v in values]
            else:
                parts.append(text)
                lengths.append(np.fromiter(map(len, values), np.int32, len(values)))
                continue
        try:
            parts.append(b"".join(values))
        except TypeError:  # str among bytes
            values = [v.encode() if type(v) is str else v for v in values]
            parts.append(b"".join(values))
        lengths.append(np.fromiter(map(len, values), np.int32, len(values)))
    offsets = np.zeros(sum(map(len, lengths)) + 1, np.int32)
    if len(offsets) > 1:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return Packed(b"".join(parts), offsets, rows)


class PackedSignature:
    """``serving_raw`` (a concrete function taking one ``[rows]`` string tensor per name)
    called with a `Packed` batch: the tensors are cut from the buffer inside one graph call.
    ``owner``: the loaded SavedModel, kept alive (the graph call holds its variables weakly)."""

    def __init__(self, fn: Any, owner: Any = None) -> None:
        import tensorflow as tf

        self._tf = tf
        self._owner = owner
        self.names = sorted(fn.structured_input_signature[1])
        width = len(self.names)

        @tf.function(
            input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([None], tf.int32)],
            autograph=False,
        )
        def call(blob: Any, offsets: Any) -> Any:
            starts, lengths = offsets[:-1], offsets[1:] - offsets[:-1]
            columns = tf.reshape(tf.strings.substr(blob, starts, lengths), [width, -1])
            return fn(**{name: columns[i] for i, name in enumerate(self.names)})

        self._call = flat_call(call.get_concrete_function())

    def __call__(self, packed: Packed) -> dict[str, Any]:
        """The signature's outputs (tensors); raises tf.errors.InvalidArgumentError as the
        signature does for a batch it refuses."""
        tf = self._tf
        return self._call(
            {"blob": tf.constant(packed.blob), "offsets": tf.constant(packed.offsets)}
        )

    def columns(self, packed: Packed) -> dict[str, Any]:
        """The signature's ``[rows]`` string tensors (to call it on a subset of the rows)."""
        tf = self._tf
        off = packed.offsets
        values = tf.strings.substr(tf.constant(packed.blob), off[:-1], np.diff(off))
        return {
            n: values[i * packed.rows : (i + 1) * packed.rows] for i, n in enumerate(self.names)
        }


def flat_call(fn: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A concrete function called with its tensors in order, past the structured wrapper
    (binding keyword arguments and checking every TensorSpec cost 0.3-1 ms a call on a 16-input
    model, as much as running the graph). Signatures take keyword-only tensors; one with
    another shape of inputs is called the usual way."""
    names = list(fn.function_type.parameters)
    captured = fn.captured_inputs
    placeholders = [t.name.split(":")[0] for t in fn.inputs[: len(fn.inputs) - len(captured)]]
    if placeholders != names:
        return lambda tensors: fn(**tensors)
    call = fn._call_flat  # noqa: SLF001 - the public __call__ is the wrapper above

    def run(tensors: dict[str, Any]) -> dict[str, Any]:
        return call([tensors[n] for n in names], captured)

    return run
