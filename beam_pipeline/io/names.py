"""Which column names a model can take.

A kept column becomes a tensor name in the trained model's ``serving_raw`` signature, and
TensorFlow takes only names of its ops' form: letters and digits of ASCII, ``.``, ``_``, ``-``,
``/`` and ``>``, the first a letter, a digit or ``.``, the last not ``/`` (a name scope's
form). Anything else (a space, ``<``, ``"``, ``:``,
``é``, a leading ``_``) failed late, in train, with "Got non-flat/non-unique argument names for
SavedModel signature 'serving_raw'". Such a column is refused before any stage runs (exit 2),
naming it, with the two ways out: rename it in the data, or leave it out (``ingest.drop``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TENSOR_NAME = re.compile(r"[A-Za-z0-9.](?:[A-Za-z0-9_.\-/>]*[A-Za-z0-9_.\->])?\Z")


def unsafe(names: Iterable[str], drop: Iterable[str] = ()) -> list[str]:
    """The kept names (not in ``drop``) that are no tensor name, in order."""
    dropped = set(drop)
    return [n for n in names if n not in dropped and not TENSOR_NAME.match(n)]


def suggest(name: str) -> str:
    """A tensor name close to ``name``: other characters as ``_``, a letter in front if needed,
    no ``/`` at the end."""
    safe = re.sub(r"[^A-Za-z0-9_.\-/>]", "_", name).rstrip("/") or "column"
    return safe if TENSOR_NAME.match(safe) else "c" + safe


def problem(name: str, where: str) -> str:
    """The message for one unsafe column of the data at ``where``."""
    return (
        f"column {name!r} in {where} cannot be a model input: TensorFlow takes names of ASCII "
        f"letters, digits and . _ - / > (the first a letter, digit or ., the last not /); "
        f"rename it in the data (e.g. {suggest(name)!r}) "
        f"or leave it out with ingest.drop: [{name!r}]"
    )
