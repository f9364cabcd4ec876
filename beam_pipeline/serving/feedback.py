"""``beam-pipeline feedback CONFIG --input labels.csv``: ground truth in bulk, one log segment."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from beam_pipeline.core.config import Config
from beam_pipeline.core.errors import ConfigError, DataError
from beam_pipeline.serving import log as plog

log = logging.getLogger(__name__)


def _label(text: str) -> Any:
    """Numbers stay numbers (as the endpoint receives them in JSON); other text stays text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | bool) and not isinstance(value, str) else text


def import_labels(config: Config, input_csv: str, model: str | None = None) -> dict[str, Any]:
    """Write every (request_id, label) row of a CSV as one feedback segment."""
    path = Path(input_csv)
    if not path.is_file():
        raise ConfigError(f"--input: {path} not found")
    name = model or config.pipeline.name
    pairs: list[tuple[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["request_id", "label"]:
            raise DataError(f"{path}: expected the header request_id,label; received {header}")
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2 or not row[0]:
                raise DataError(f"{path}:{n}: expected request_id,label; received {row}")
            pairs.append((row[0], _label(row[1])))
    if not pairs:
        raise DataError(f"{path}: no labels")
    text = plog.feedback_lines(pairs, plog.now_iso())
    segment = plog.write_segment(config.root, plog.FEEDBACK, name, text, len(pairs))
    log.info("feedback: %d labels for %s → %s", len(pairs), name, segment)
    return {"model": name, "labels": len(pairs), "segment": str(segment)}
