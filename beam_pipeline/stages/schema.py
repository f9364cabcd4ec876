"""The schema stage: import a curated ``schema.pbtxt``, or infer one from the train statistics.

Writes ``schema.pbtxt`` (a tensorflow_metadata ``Schema`` in text format). Not a Beam job: schema
inference is a plain function on the statistics proto.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from beam_pipeline.core.artifacts import (
    SCHEMA_FILE,
    Artifact,
    file_digest,
    load_statistics,
    schema_path,
)
from beam_pipeline.core.errors import ConfigError, DataError
from beam_pipeline.core.stage import Prepared, Stage, StageContext
from beam_pipeline.core.stage_sections import SchemaSection
from beam_pipeline.io import filesystem

if TYPE_CHECKING:
    from beam_pipeline.core.metadata import Store

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


PIPELINE_SCHEMA = "pipeline_schema"
ACCEPT = "SchemaAccept"  # the ML Metadata execution type of `schema --accept`


def _validated(store: Store) -> tuple[set[int], set[int]]:
    """(ids of schemas a passing validation used, ids of schemas a stopping one used)."""
    passed, stopped = set(), set()
    for a in store.artifacts_of_type("ExampleAnomalies"):
        if a.properties.get("schema_id") is not None:
            (passed if a.properties.get("passed") else stopped).add(int(a.properties["schema_id"]))
    return passed, stopped


def pipeline_schema(store: Store) -> Artifact | None:
    """The schema later spans are checked against: the newest LIVE Schema that was accepted
    (``schema --accept``) or that a passing validation used; None before the first passing run."""
    passed, _ = _validated(store)
    for art in store.artifacts_of_type("Schema"):
        if (art.properties.get("accepted") or art.id in passed) and filesystem.exists(
            schema_path(art)
        ):
            return art
    return None


def exportable(store: Store, run_id: str | None = None) -> Artifact:
    """The schema ``schema --export`` writes: that of the newest run (or of run ``run_id``) whose
    validation did not stop it; never one only a stopped run used.

    Raises:
        ConfigError: no such schema (naming why).
    """
    passed, stopped = _validated(store)
    arts = store.artifacts_of_type("Schema")
    if run_id is not None:
        runs = {r["run_id"]: r for r in store.runs()}
        if run_id not in runs:
            raise ConfigError(f"--run: no run {run_id!r} in pipeline {store.pipeline_name!r}")
        made = set()  # the schema the run produced or validated against (a cached one too)
        for ex in store.run_executions(runs[run_id]["id"]):
            made |= {a.id for a in store.execution_outputs(ex.id).values()}
            used = store.execution_inputs(ex.id).get("schema")
            made |= {used.id} if used is not None else set()
        arts = [a for a in arts if a.id in made]
        if not arts:
            raise ConfigError(f"--run: run {run_id!r} has no schema")
    for art in arts:
        if art.id not in stopped or art.id in passed:
            return art
    if run_id is None and not arts:
        raise ConfigError(
            f"pipeline {store.pipeline_name!r} has no schema yet; run it (at least --to schema) "
            "first"
        )
    raise ConfigError(
        f"pipeline {store.pipeline_name!r} has no schema from a run that passed validation"
        + (f" in run {run_id!r}" if run_id else "")
    )


def export_latest(store: Store, dest: str, run_id: str | None = None) -> str:
    """Copy the schema of the newest passing run (or of ``run_id``) to ``dest``.

    Backs ``beam-pipeline schema CONFIG --export PATH [--run RUN]``: export a schema, curate it,
    and name it in ``schema.path``.

    Args:
        store: the pipeline's metadata store.
        dest: a file path, or an existing folder (the file is then ``dest/schema.pbtxt``).
        run_id: the run whose schema to export (it must not have been stopped by validation).

    Returns:
        The path written.

    Raises:
        ConfigError: no such schema.
    """
    art = exportable(store, run_id)
    src = schema_path(art)
    target = Path(dest)
    if target.is_dir():
        target = target / SCHEMA_FILE
    filesystem.write_text(target, filesystem.read_text(src))
    log.info("schema: exported artifact %s (%s) to %s", art.id, src, target)
    return str(target)


def accept(store: Store, root: Any, section: SchemaSection, run_id: str | None = None) -> Artifact:
    """Accept an evolved schema: infer one from the train statistics of the newest run (or of
    run ``run_id``) and record it in ML Metadata (a ``SchemaAccept`` execution whose output
    Schema has ``accepted: true``); later runs are checked against it (see `pipeline_schema`).

    Raises:
        ConfigError: no statistics to infer from, or a curated ``schema.path`` is configured.
    """
    if section.path is not None:
        raise ConfigError("--accept: schema.path names a curated schema; edit that file instead")
    stats = store.artifacts_of_type("ExampleStatistics")
    if run_id is not None:
        runs = {r["run_id"]: r for r in store.runs()}
        if run_id not in runs:
            raise ConfigError(f"--run: no run {run_id!r} in pipeline {store.pipeline_name!r}")
        made = set()
        for ex in store.run_executions(runs[run_id]["id"]):
            made |= {a.id for a in store.execution_outputs(ex.id).values()}
            made |= {a.id for a in store.execution_inputs(ex.id).values()}
        stats = [a for a in stats if a.id in made]
    stats = [a for a in stats if TRAIN_SPLIT in a.splits]
    if not stats:
        raise ConfigError(
            "--accept: no train statistics" + (f" in run {run_id!r}" if run_id else "")
        )
    schema = infer(load_statistics(stats[0], TRAIN_SPLIT), section.min_domain_mass)
    folder = filesystem.join(str(root), "schema", f"accepted-{time.strftime('%Y%m%d-%H%M%S')}")
    filesystem.makedirs(folder)
    out = Artifact(
        "Schema",
        folder,
        {"source": "accepted", "accepted": True, "num_features": len(schema.feature)},
    )
    filesystem.write_text(schema_path(out), text_format.MessageToString(schema))
    out.fingerprint = file_digest([str(schema_path(out))])
    store.record_execution(ACCEPT, {"run": run_id or ""}, {"statistics": stats[0]}, {"schema": out})
    log.info("schema: accepted %s (inferred from statistics %s)", schema_path(out), stats[0].id)
    return out


def prepare(section: SchemaSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    """Key the cache on the curated file's bytes (a path alone would miss edits)."""
    if section.path is None:
        baseline = pipeline_schema(ctx.store) if section.reuse else None
        if baseline is None or _inferred_from(ctx.store, baseline, inputs["statistics"]):
            return Prepared()  # infer (again: the same statistics give the same schema)
        return Prepared(
            key={PIPELINE_SCHEMA: file_digest([str(schema_path(baseline))])},
            inputs={PIPELINE_SCHEMA: baseline},
        )
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
    elif PIPELINE_SCHEMA in inputs:
        baseline = inputs[PIPELINE_SCHEMA]
        schema = text_format.Parse(filesystem.read_text(schema_path(baseline)), schema_pb2.Schema())
        source = "reused"
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
    if source == "reused":
        out.properties["reused_from"] = inputs[PIPELINE_SCHEMA].id
    filesystem.write_text(schema_path(out), text_format.MessageToString(schema))
    log.info(
        "schema: %s, %d features, %.1f s",
        f"curated from {section.path}"
        if section.path
        else f"the pipeline's schema (artifact {inputs[PIPELINE_SCHEMA].id}), reused"
        if source == "reused"
        else "inferred from train statistics",
        len(schema.feature),
        time.time() - t0,
    )
    return {"schema": out}


def _inferred_from(store: Store, schema: Artifact, statistics: Artifact) -> bool:
    """Whether ``schema`` was inferred by the schema stage from these very statistics."""
    if schema.properties.get("source") != "inferred" or schema.id is None:
        return False
    producer = store.producer(schema.id)
    used = store.execution_inputs(producer).get("statistics") if producer else None
    return used is not None and used.fingerprint == statistics.fingerprint


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
