"""`beam-pipeline doctor CONFIG`: find and repair what a crash or a full disk can leave behind.

1. RUNNING executions whose process is gone (see `beam_pipeline.core.liveness`): marked CANCELED,
   their staging folder and any folder they published without registering it removed.
2. Runs still ``running`` whose process is gone: marked ``canceled``/``failed`` with the stage.
3. Orphan folders under ``{root}/{stage}/``: a staging folder (``.N.tmp``) of an execution that
   is not running, or an execution folder (``N``) that holds no LIVE artifact. In the serving
   folder (``{serving_dir}/{pipeline}/``), a push's staging folder (``.V.tmp-PID``) whose pid is
   no running push execution's (TF Serving ignores them, but each holds a whole SavedModel),
   and a ``label`` command's ``.labels.json.tmp-PID`` whose process is gone.
4. Prediction-log segments left open (``.part-….jsonl.inprogress``) by a server process that is
   gone: renamed to their final name, so every answered prediction is in the log.
5. Attributions and events that point at an artifact (or execution) the store does not hold
   (a metadata write cut short by a full disk): deleted, on SQLite, MySQL and PostgreSQL alike.

First of all, the store itself: one whose creation was cut short (a full disk) holds no tables;
an empty SQLite file is removed (the next run creates the store). A store that lacks some of
ML Metadata's tables, or cannot be read at all, is a `MetadataError` naming it and the remedy.

Every repair is a finding in the returned list; ``dry_run`` finds without repairing.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core import registry
from beam_pipeline.core.config import Config
from beam_pipeline.core.executor import Executor
from beam_pipeline.core.liveness import pid_exists
from beam_pipeline.core.metadata import MetadataError, Store, props, sqlite_path
from beam_pipeline.io import filesystem
from beam_pipeline.stages.push import STAGING

log = logging.getLogger(__name__)

# (table, column, the table it must point into) for the dangling-reference check.
REFERENCES = [
    ("Attribution", "artifact_id", "Artifact"),
    ("Attribution", "context_id", "Context"),
    ("Association", "execution_id", "Execution"),
    ("Association", "context_id", "Context"),
    ("Event", "artifact_id", "Artifact"),
    ("Event", "execution_id", "Execution"),
    ("EventPath", "event_id", "Event"),
]
TABLES = sorted({t for t, _, _ in REFERENCES} | {t for _, _, t in REFERENCES})


def examine(config: Config, dry_run: bool = False) -> list[dict[str, Any]]:
    """Find (and unless ``dry_run``, repair) what a crash left; one dict per finding."""
    empty = _empty_store(config, dry_run)
    if empty:
        return empty  # nothing was ever recorded in it
    findings = _dangling_references(config, dry_run)  # first: the queries below need them gone
    store = Store(config, create=False)
    try:
        findings += _dead_executions(config, store, dry_run)
        for run in store.settle_runs(write=not dry_run):
            if run.get("settled"):
                findings.append(
                    {
                        "kind": "dead run",
                        "what": f"run {run['run_id']}",
                        "repair": f"marked {run['status']} (in {run['stage'] or '?'})",
                    }
                )
        findings += _orphan_folders(config, store, dry_run)
        findings += _push_leftovers(config, store, dry_run)
        findings += _label_leftovers(config, dry_run)
        findings += _open_log_segments(config, dry_run)
    finally:
        store.close()
    return findings


def _dead_executions(config: Config, store: Store, dry_run: bool) -> list[dict[str, Any]]:
    found = []
    executor = Executor(store, root=config.root)
    for stage in store.execution_types():
        dead = store.dead_executions(stage) if dry_run else executor.abandon_dead(stage)
        for ex in dead:
            found.append(
                {
                    "kind": "dead execution",
                    "what": f"{stage} execution {ex.id} (RUNNING, its process is gone)",
                    "repair": "marked CANCELED; its folders removed",
                }
            )
    return found


def _orphan_folders(config: Config, store: Store, dry_run: bool) -> list[dict[str, Any]]:
    found = []
    for stage in store.execution_types():
        folder = config.root / stage
        if not folder.is_dir():
            continue
        executions = {ex.id: ex for ex in store.executions(stage)}
        for entry in sorted(folder.iterdir()):
            exec_id = _execution_id(entry.name)
            if exec_id is None:
                continue
            ex = executions.get(exec_id)
            if entry.name.startswith("."):
                orphan = ex is None or ex.last_known_state != pb.Execution.RUNNING
            else:
                inside = str(entry).rstrip("/") + "/"  # local or s3://… alike
                live = ex is not None and any(
                    a.properties.get("_state") == "LIVE" and f"{a.uri}/".startswith(inside)
                    for a in store.execution_outputs(exec_id).values()
                )
                orphan = not live and not (ex and ex.last_known_state == pb.Execution.RUNNING)
            if orphan:
                found.append({"kind": "orphan folder", "what": str(entry), "repair": "removed"})
                if not dry_run:
                    filesystem.rmtree(entry)
    return found


def _open_log_segments(config: Config, dry_run: bool) -> list[dict[str, Any]]:
    """Prediction-log segments a dead server left open: finalized (renamed into place)."""
    from beam_pipeline.serving.log import finalize_orphans

    if filesystem.is_remote(config.pipeline.root):
        return []
    return [
        {
            "kind": "open log segment",
            "what": f"{path} (its server process is gone)",
            "repair": "finalized",
        }
        for path in finalize_orphans(config.pipeline.root, dry_run)
    ]


def _push_leftovers(config: Config, store: Store, dry_run: bool) -> list[dict[str, Any]]:
    """Staging folders of pushes that are gone, in the serving folder (local only: a push to an
    object store copies in place)."""
    folder = registry.model_dir(config)
    if filesystem.is_remote(folder) or not folder.is_dir():
        return []
    live: set[int] = set()
    if "push" in store.execution_types():
        dead = {ex.id for ex in store.dead_executions("push")}
        live = {
            int(props(ex).get("pid") or 0)
            for ex in store.executions("push")
            if ex.last_known_state == pb.Execution.RUNNING and ex.id not in dead
        }
    found = []
    for entry in sorted(folder.iterdir()):
        match = STAGING.match(entry.name)
        if not match or int(match.group(2)) in live:
            continue
        found.append(
            {
                "kind": "push leftover",
                "what": f"{entry} (a push of version {match.group(1)} by process "
                f"{match.group(2)}, which is gone)",
                "repair": "removed",
            }
        )
        if not dry_run:
            filesystem.rmtree(entry)
    return found


def _label_leftovers(config: Config, dry_run: bool) -> list[dict[str, Any]]:
    """``{labels file}.tmp-PID`` files of ``label`` commands that are gone (killed between the
    write and the rename), in the serving folder."""
    from beam_pipeline.serving.models import LABELS_FILE  # serving's imports only when needed

    folder = registry.model_dir(config)
    if filesystem.is_remote(folder) or not folder.is_dir():
        return []
    staging = re.compile(rf"^{re.escape(LABELS_FILE)}\.tmp-(\d+)$")
    found = []
    for entry in sorted(folder.iterdir()):
        match = staging.match(entry.name)
        if not match or pid_exists(int(match.group(1))):
            continue
        found.append(
            {
                "kind": "label leftover",
                "what": f"{entry} (written by `label` process {match.group(1)}, which is gone)",
                "repair": "removed",
            }
        )
        if not dry_run:
            filesystem.remove(entry)
    return found


def _execution_id(name: str) -> int | None:
    core = name[1:-4] if name.startswith(".") and name.endswith(".tmp") else name
    return int(core) if core.isdigit() else None


def _empty_store(config: Config, dry_run: bool) -> list[dict[str, Any]]:
    """A store without ML Metadata's tables (its creation was cut short) as one finding; a
    `MetadataError` naming the store and the remedy if it has only some, or cannot be read."""
    db = _connect(config)
    if db is None:
        return []
    section = config.metadata
    try:
        present = {name.lower() for name in _table_names(db, section.backend)}
    except Exception as exc:  # noqa: BLE001 - sqlite3, PyMySQL and pg8000 raise their own errors
        raise MetadataError(
            f"metadata: cannot read the {section.backend} store at {_where(config)}: {exc}. "
            + _remedy(config)
        ) from exc
    finally:
        db.close()
    missing = [t for t in TABLES if t.lower() not in present]
    if not missing:
        return []
    if len(missing) < len(TABLES):
        raise MetadataError(
            f"metadata: the {section.backend} store at {_where(config)} is incomplete: it has no "
            f"table {', '.join(missing)} (its creation or an upgrade was cut short). "
            + _remedy(config)
        )
    path = sqlite_path(section, config.root) if section.backend == "sqlite" else None
    if path is not None and not dry_run:
        filesystem.remove(path)
    return [
        {
            "kind": "empty store",
            "what": f"{section.backend} store at {_where(config)} (no tables: its creation was "
            "cut short, by a full disk say)",
            "repair": "removed; the next run creates it"
            if path is not None
            else "none needed: the next run creates its tables",
        }
    ]


def _table_names(db: Any, backend: str) -> list[str]:
    cur = db.cursor()
    if backend == "sqlite":
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    elif backend == "mysql":
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        )
    else:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    return [str(row[0]) for row in cur.fetchall()]


def _where(config: Config) -> str:
    section = config.metadata
    if section.backend in ("mysql", "postgresql"):
        return f"{section.host}:{section.port}/{section.database}"
    return str(sqlite_path(section, config.root))


def _remedy(config: Config) -> str:
    section = config.metadata
    if section.backend == "sqlite":
        path = sqlite_path(section, config.root)
        return (
            f"Restore it from a backup, or move it aside (mv {path} {path}.broken) and run again: "
            f"a new store is created, without the history of earlier runs (their folders under "
            f"{config.root} stay)."
        )
    return (
        f"Restore database {section.database} from a backup, or drop and create it again and run "
        "again: a new store is created, without the history of earlier runs."
    )


def _dangling_references(config: Config, dry_run: bool) -> list[dict[str, Any]]:
    db = _connect(config)
    if db is None:
        return []
    found = []
    try:
        cur = db.cursor()
        for table, column, target in REFERENCES:
            where = f"{column} NOT IN (SELECT id FROM {target})"
            cur.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}")
            (count,) = cur.fetchone()
            if count:
                found.append(
                    {
                        "kind": "dangling reference",
                        "what": f"{count} {table} rows whose {column} is not in {target}",
                        "repair": "deleted",
                    }
                )
                if not dry_run:
                    cur.execute(f"DELETE FROM {table} WHERE {where}")
        db.commit()
    finally:
        db.close()
    return found


def _connect(config: Config) -> Any:
    """A DB-API connection to the store's own database (ML Metadata's tables, the same names on
    every backend); None where there is nothing to check (an in-memory or absent store)."""
    section = config.metadata
    if section.backend == "sqlite":
        path = sqlite_path(section, config.root)
        return sqlite3.connect(path) if path.is_file() else None
    if section.backend == "mysql":
        import pymysql

        return pymysql.connect(
            host=section.host,
            port=section.port or 3306,
            user=section.user,
            password=section.password(),
            database=section.database,
            connect_timeout=10,
        )
    if section.backend == "postgresql":
        import pg8000.dbapi

        return pg8000.dbapi.connect(
            host=section.host,
            port=section.port or 5432,
            user=section.user,
            password=section.password(),
            database=section.database,
            timeout=30,
        )
    return None
