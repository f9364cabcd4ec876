"""`io.packed`: a batch's string columns in one buffer give the model the same tensors as one
``tf.constant`` per column; serve's packing (`pack_values`) and score's (`pack_arrays`) agree."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from beam_pipeline.io.packed import PackedSignature, pack_arrays, pack_values


def _column(values: list[object]) -> np.ndarray:
    column = np.empty(len(values), object)
    column[:] = values
    return column


def _unpacked(blob: bytes, offsets: np.ndarray, rows: int) -> list[list[bytes]]:
    values = [blob[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return [values[i : i + rows] for i in range(0, len(values), rows)]


def _as_bytes(values: list[object]) -> list[bytes]:
    return [v.encode() if isinstance(v, str) else v for v in values]  # type: ignore[misc]


CASES = {
    "ascii text and number texts": [["Cash", "Credit Card", ""], [b"1.5", b"", b"-3"]],
    "non-ASCII text": [["Züri", "", "東京"], [b"0", b"1", b"2"]],
    "str among bytes": [[b"a", "b", b"c"], ["x", b"y", "z"]],
    "empty strings only": [["", "", ""], [b"", b"", b""]],
    "no rows": [[], []],
    "no columns": [],
}


@pytest.mark.parametrize("columns", CASES.values(), ids=list(CASES))
def test_pack_keeps_every_value_in_its_column(columns: list[list[object]]) -> None:
    packed = pack_values([_column(c) for c in columns])
    blob, offsets = packed.blob, packed.offsets
    assert offsets.dtype == np.int32 and offsets[0] == 0 and offsets[-1] == len(blob)
    rows = len(columns[0]) if columns else 0
    assert len(offsets) == 1 + rows * len(columns)
    if rows:
        assert _unpacked(blob, offsets, rows) == [_as_bytes(c) for c in columns]


def test_pack_matches_the_values_on_random_columns() -> None:
    rng = random.Random(7)
    alphabet = 'ab "\\\n\x00é漢😀'
    for _ in range(200):
        rows = rng.randint(1, 12)
        columns = []
        for _ in range(rng.randint(1, 5)):
            texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(rows)]
            columns.append([t.encode() for t in texts] if rng.random() < 0.5 else texts)
        packed = pack_values([_column(c) for c in columns])
        assert packed.rows == rows
        assert _unpacked(packed.blob, packed.offsets, rows) == [_as_bytes(c) for c in columns]
        arrays = [pa.array(_as_bytes(c), pa.binary()) for c in columns]
        from_arrow = pack_arrays(arrays)
        assert (from_arrow.blob, from_arrow.offsets.tolist()) == (
            packed.blob,
            packed.offsets.tolist(),
        )


def test_packed_call_gives_the_signature_the_same_tensors() -> None:
    import tensorflow as tf

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="b"),
            tf.TensorSpec([None], tf.string, name="a"),
        ]
    )
    def signature(b: tf.Tensor, a: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"joined": tf.strings.join([a, b], separator="|"), "length": tf.strings.length(b)}

    fn = signature.get_concrete_function()
    # a concrete function takes positional tensors; a signature takes them by name
    wrapped = tf.function(lambda **kw: fn(kw["b"], kw["a"])).get_concrete_function(
        b=tf.TensorSpec([None], tf.string), a=tf.TensorSpec([None], tf.string)
    )
    call = PackedSignature(wrapped)
    assert call.names == ["a", "b"]
    out = call(pack_values([_column(["x", "", "é"]), _column([b"1", b"22", b""])]))
    assert out["joined"].numpy().tolist() == [b"x|1", b"|22", "é|".encode()]
    assert out["length"].numpy().tolist() == [1, 2, 0]
    empty = call(pack_values([_column([]), _column([])]))
    assert empty["joined"].numpy().tolist() == []
