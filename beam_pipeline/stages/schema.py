"""The schema stage: import a curated ``schema.pbtxt``, or infer one from the train statistics.

Writes ``schema.pbtxt`` (a tensorflow_metadata ``Schema`` in text format). Not a Beam job: schema
inference is a plain function on the statistics proto.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from beam_pipeline.artifacts import (
    SCHEMA_FILE,
    Artifact,
    file_digest,
    load_statistics,
    schema_path,
)
from beam_pipeline.errors import ConfigError, DataError
from beam_pipeline.io import filesystem
from beam_pipeline.stage import Prepared, Stage, StageContext
from beam_pipeline.stage_sections import SchemaSection

if TYPE_CHECKING:
    from beam_pipeline.metadata import Store

log = logging.getLogger(__name__)

TRAIN_SPLIT = "train"


def read_schema_file(file: str) -> schema_pb2.Schema:
    """Parse a ``schema.pbtxt``.

    Raises:
        ConfigError: the file is missing or is not a text-format Schema; the message names it.
    """
    p = filesystem.as_path(file)
    if not p.is_file():
        raise ConfigError(f"schema.path: {file}: file not found")
    try:
        return text_format.Parse(p.read_text(), schema_pb2.Schema())
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ConfigError(f"schema.path: {file}: not a valid schema.pbtxt: {exc}") from exc


def infer(
    statistics: statistics_pb2.DatasetFeatureStatisticsList, min_domain_mass: float = 1.0
) -> schema_pb2.Schema:
    """A schema inferred from statistics, with ``min_domain_mass`` on string domains when < 1."""
    schema = tfdv.infer_schema(statistics)
    if min_domain_mass < 1:
        for feature in schema.feature:
            if feature.WhichOneof("domain_info") in ("domain", "string_domain"):
                feature.distribution_constraints.min_domain_mass = min_domain_mass
    return schema


def export_latest(store: Store, dest: str) -> str:
    """Copy the newest LIVE Schema artifact of the pipeline to ``dest``.

    Backs ``beam-pipeline schema CONFIG --export PATH``: export an inferred schema, curate it, and
    name it in ``schema.path``.

    Args:
        store: the pipeline's metadata store.
        dest: a file path, or an existing folder (the file is then ``dest/schema.pbtxt``).

    Returns:
        The path written.

    Raises:
        ConfigError: the pipeline has no Schema artifact yet.
    """
    arts = store.artifacts_of_type("Schema")
    if not arts:
        raise ConfigError(
            f"pipeline {store.pipeline_name!r} has no schema yet; "
            "run it (at least --to schema) first"
        )
    src = schema_path(arts[0])
    target = Path(dest)
    if target.is_dir():
        target = target / SCHEMA_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    log.info("schema: exported artifact %s (%s) to %s", arts[0].id, src, target)
    return str(target)


def prepare(section: SchemaSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    """Key the cache on the curated file's bytes (a path alone would miss edits)."""
    if section.path is None:
        return Prepared()
    read_schema_file(section.path)  # fail early, with the file's name
    return Prepared(key={"schema_sha": file_digest([section.path])})


def run(
    section: SchemaSection, inputs: dict[str, Artifact], ctx: StageContext
) -> dict[str, Artifact]:
    """Import or infer the schema. Returns ``{"schema": Schema}``."""
    t0 = time.time()
    if section.path is not None:
        schema = read_schema_file(section.path)
        source = "curated"
    else:
        stats = inputs["statistics"]
        if TRAIN_SPLIT not in stats.splits:
            raise DataError(
                f"{stats.uri}: cannot infer a schema without a {TRAIN_SPLIT!r} split; "
                f"received splits {stats.splits}"
            )
        schema = infer(load_statistics(stats, TRAIN_SPLIT), section.min_domain_mass)
        source = "inferred"
    out = ctx.output("schema", "Schema", source=source, num_features=len(schema.feature))
    if section.path is not None:
        out.properties["path"] = section.path
    schema_path(out).write_text(text_format.MessageToString(schema))
    log.info(
        "schema: %s, %d features, %.1f s",
        f"curated from {section.path}" if section.path else "inferred from train statistics",
        len(schema.feature),
        time.time() - t0,
    )
    return {"schema": out}


STAGE = Stage(
    name="schema",
    deterministic=True,
    section=SchemaSection,
    run=run,
    inputs={"statistics": "statistics.statistics"},
    outputs={"schema": "Schema"},
    prepare=prepare,
    cache_exempt=frozenset({"path"}),  # keyed by the file's bytes (schema_sha) instead
)
