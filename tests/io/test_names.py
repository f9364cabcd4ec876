"""Column names a model can take (issue 21, item 5): the rule against TensorFlow itself."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipeline.io import names

# What a SavedModel signature took and refused, found by saving one (see `_tf_takes`).
TAKEN = ["ok_name", "a-b", "a.b", "1a", "a/b", "Ab", "a>b", ".a", "trip_miles"]
REFUSED = ["a b", "a<b", 'a"b', "_a", "é", "a:b", "-a", "a,b", "", "tab\tx", "1/", "a/b/"]


def test_the_rule() -> None:
    assert names.unsafe(TAKEN) == []
    assert names.unsafe(REFUSED) == REFUSED
    assert names.unsafe(["ok", "a b", "c<d"], drop=["a b"]) == ["c<d"]
    for name in REFUSED:
        assert names.TENSOR_NAME.match(names.suggest(name)), name
    assert names.suggest("trip miles") == "trip_miles" and names.suggest("_x") == "c_x"
    message = names.problem("trip miles", "data.csv")
    assert "'trip miles' in data.csv" in message and "ingest.drop: ['trip miles']" in message


def _tf_takes(name: str) -> bool:
    """Whether a ``serving_raw``-like signature with an input of that name saves and answers."""
    import tensorflow as tf

    spec = {k: tf.TensorSpec([None], tf.string, name=k) for k in sorted({name, "zz"})}

    @tf.function(input_signature=[spec])
    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"n": tf.strings.length(features[name])}

    with tempfile.TemporaryDirectory() as folder:
        try:
            tf.saved_model.save(
                tf.Module(), folder, signatures={"raw": serve.get_concrete_function()}
            )
        except ValueError:
            return False
        out = tf.saved_model.load(folder).signatures["raw"](
            **{k: tf.constant(["abc"]) for k in spec}
        )
        return out["n"].numpy().tolist() == [3]


@pytest.mark.parametrize("name", TAKEN + REFUSED[:4])
def test_the_rule_is_tensorflows(name: str) -> None:
    assert _tf_takes(name) == (name in TAKEN)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from('ab1_.-/>< "é:,'), min_size=1, max_size=4))
def test_generated_names_agree_with_tensorflow(name: str) -> None:
    assert _tf_takes(name) == (not names.unsafe([name]))
