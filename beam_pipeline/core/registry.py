"""The model registry: versions, blessings, reviews, pushes and rollbacks, read from ML Metadata.

Versions. A pipeline's model version N is the N-th ``Model`` artifact its ``train`` stage
registered: the 1-based rank of the artifact's id among every Model artifact of the pipeline
context, LIVE or not. MLMD ids only grow and artifacts are never removed (only marked DELETED), so
a version never changes once given, needs no write (no race between concurrent runs), and a
cached train (same Model artifact) keeps its version. The same number names the folder a push
writes (``{serving_dir}/{pipeline}/{version}/``), the ``model_version`` of every scoring record,
and ``--model VERSION`` on the command line.

Decisions made outside a run are MLMD executions of the pipeline context with the Model as input:
``review`` (approve/reject: user, time, comment), ``rollback`` (which served versions were retired
or restored) and ``score`` (batch scoring: input fingerprint, output ``InferenceResult``).
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_metadata.proto import metadata_store_pb2 as pb

from beam_pipeline.core.artifacts import Artifact, saved_model_dir
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.core.metadata import props
from beam_pipeline.io import filesystem

if TYPE_CHECKING:
    from beam_pipeline.core.config import Config
    from beam_pipeline.core.metadata import Store

REVIEW = "review"
ROLLBACK = "rollback"
SCORE = "score"
RETIRED_DIR = ".retired"  # {serving_dir}/.retired/{pipeline}/{version}: versions taken off serving


# ---------------------------------------------------------------------------------------------
# Versions


# What `downstream` reports of reviews, rollbacks and scoring jobs (and `lineage` prints).
DOWNSTREAM_KEYS = (
    "decision",
    "user",
    "comment",
    "to_version",
    "retired",
    "restored",
    "input",
    "rows",
    "rejected",
    "window",
    "alerts",
)


def models(store: Store) -> list[Artifact]:
    """Every Model artifact of this pipeline (any state), oldest first: index + 1 = version."""
    return sorted(store.artifacts_of_type("Model", live_only=False), key=lambda a: a.id or 0)


def version_of(store: Store, model: Artifact) -> int:
    """The registry version of a Model artifact (ConfigError when it is not this pipeline's)."""
    for i, art in enumerate(models(store), start=1):
        if art.id == model.id:
            return i
    raise ConfigError(
        f"model artifact {model.id} ({model.uri}) is not a Model of pipeline "
        f"{store.pipeline_name!r}"
    )


def model_by_version(store: Store, version: int, flag: str = "--model") -> Artifact:
    """The Model artifact of a version; ConfigError naming ``flag`` and the versions that exist."""
    arts = models(store)
    if not 1 <= version <= len(arts):
        known = f"1..{len(arts)}" if arts else "none yet (run the pipeline first)"
        raise ConfigError(f"{flag}: no model version {version}; versions are {known}")
    return arts[version - 1]


# ---------------------------------------------------------------------------------------------
# Recording decisions (executions outside a run)


def _records(store: Store, kind: str) -> list[dict[str, Any]]:
    """Executions of one kind as property dicts (plus ``execution``), oldest first."""
    return [
        {"execution": ex.id, **props(ex)}
        for ex in sorted(store.executions(kind), key=lambda e: e.id)
        if ex.last_known_state == pb.Execution.COMPLETE
    ]


def record_review(
    store: Store, version: int, decision: str, comment: str = "", user: str | None = None
) -> dict[str, Any]:
    """Approve or reject a model version; the latest review of a version is the one that counts."""
    if decision not in ("approved", "rejected"):
        raise ConfigError(f"review decision: expected approved or rejected; received {decision!r}")
    model = model_by_version(store, version)
    review = {
        "decision": decision,
        "user": user or getpass.getuser(),
        "time": time.time(),
        "comment": comment,
        "model_version": version,
        "model_id": model.id,
    }
    review["execution"] = store.record_execution(REVIEW, review, {"model": model})
    return review


def latest_review(store: Store, model_id: int) -> dict[str, Any] | None:
    reviews = [r for r in _records(store, REVIEW) if r.get("model_id") == model_id]
    return reviews[-1] if reviews else None


# ---------------------------------------------------------------------------------------------
# Blessings and the baseline


def blessings(store: Store) -> list[Artifact]:
    """LIVE ModelBlessing artifacts of this pipeline, newest first."""
    return store.artifacts_of_type("ModelBlessing")


def latest_blessing(store: Store, model_id: int) -> Artifact | None:
    for b in blessings(store):
        if b.properties.get("model_id") == model_id:
            return b
    return None


def baseline(store: Store, exclude_id: int | None = None) -> Artifact | None:
    """The model production stands on: the newest blessed Model that was not rejected in review,
    not rolled back, still LIVE and on disk; ``exclude_id`` (the candidate) never counts."""
    retired = retired_versions(store)
    by_id = {m.id: (i, m) for i, m in enumerate(models(store), start=1)}
    for b in blessings(store):
        model_id = b.properties.get("model_id")
        if not b.properties.get("blessed") or model_id == exclude_id or model_id not in by_id:
            continue
        version, model = by_id[model_id]
        review = latest_review(store, model_id)
        if review and review["decision"] == "rejected":
            continue
        if version in retired or model.properties.get("_state") != "LIVE":
            continue
        if not saved_model_dir(model).is_dir():
            continue
        return model
    return None


# ---------------------------------------------------------------------------------------------
# Serving folder (TF Serving layout) and rollback


def serving_root(config: Config) -> Path:
    """``push.serving_dir`` (a relative default resolves against the config file's folder)."""
    section = config.section("push") if "push" in config.stages else None
    value = getattr(section, "serving_dir", None) or "serving"
    p = filesystem.as_path(value)
    if not p.is_absolute() and config.source_file:
        p = Path(config.source_file).resolve().parent / p
    return p


def model_dir(config: Config) -> Path:
    """``{serving_dir}/{pipeline}``: TF Serving's model base path."""
    return serving_root(config) / config.pipeline.name


def retired_dir(config: Config) -> Path:
    """Where rolled-back versions wait, outside the model base path so TF Serving ignores them."""
    return serving_root(config) / RETIRED_DIR / config.pipeline.name


def served_versions(base: Path) -> list[int]:
    """Integer version folders under a model base path, ascending (TF Serving serves the last)."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and p.is_dir())


def retired_versions(store: Store) -> set[int]:
    """Versions taken off serving by rollbacks (and not restored since)."""
    retired: set[int] = set()
    for r in _records(store, ROLLBACK):
        retired |= set(r.get("retired", []))
        retired -= set(r.get("restored", []))
    return retired


def rollback(config: Config, store: Store, to: int, comment: str = "") -> dict[str, Any]:
    """Make version ``to`` the served one again.

    TF Serving (and ``beam-pipeline serve``) serve the highest integer version under the model
    base path. So every served version above ``to`` is moved (``os.rename``: atomic, nothing is
    copied or lost) to ``{serving_dir}/.retired/{pipeline}/{version}``; if ``to`` itself had been
    retired it is moved back. Version numbers keep meaning the registry versions. A later push of
    a newer model serves that one; a rollback to a retired higher version restores it.
    """
    model = model_by_version(store, to, "--to")
    base, parked = model_dir(config), retired_dir(config)
    served = served_versions(base)
    restored: list[int] = []
    if to not in served:
        if (parked / str(to)).is_dir():
            filesystem.makedirs(base)
            filesystem.move(parked / str(to), base / str(to))
            restored.append(to)
        else:
            raise ConfigError(
                f"--to: version {to} was never pushed to {base} (served versions: "
                f"{served or 'none'}); push it first"
            )
    retired: list[int] = []
    for v in served:
        if v > to:
            filesystem.makedirs(parked)
            dest = parked / str(v)
            if dest.exists():  # retired before, pushed again, retired again: keep the newest
                filesystem.rmtree(dest)
            filesystem.move(base / str(v), dest)
            retired.append(v)
    record = {
        "to_version": to,
        "retired": retired,
        "restored": restored,
        "user": getpass.getuser(),
        "time": time.time(),
        "comment": comment,
        "serving_dir": str(base),
    }
    record["execution"] = store.record_execution(ROLLBACK, record, {"model": model})
    return record


# ---------------------------------------------------------------------------------------------
# What `models` and `lineage --model` show


@dataclass
class ModelRecord:
    """One row of ``beam-pipeline models``."""

    version: int
    id: int
    uri: str
    state: str
    run_id: str | None
    created: float | None
    train_metrics: dict[str, Any]
    eval_metrics: dict[str, Any]
    blessed: bool | None
    baseline_version: int | None
    approval: str | None  # approved | rejected | pending (required, none yet) | None
    pushed: bool
    served: bool
    retired: bool
    data_fingerprint: str | None
    span: int | None

    def to_json(self) -> dict[str, Any]:
        """``model_version`` and ``model_id``, as every other command names them."""
        out = dict(self.__dict__)
        return {"model_version": out.pop("version"), "model_id": out.pop("id"), **out}


def describe(config: Config, store: Store) -> list[ModelRecord]:
    """Every model version with its metrics, blessing, approval, push state and data."""
    served = served_versions(model_dir(config))
    live = served[-1] if served else None
    retired = retired_versions(store)
    pushed_ids = {
        p.properties.get("model_id")
        for p in store.artifacts_of_type("PushedModel")
        if p.properties.get("pushed")
    }
    out = []
    for version, model in enumerate(models(store), start=1):
        producer = store.producer(model.id) if model.id is not None else None
        ex_props: dict[str, Any] = {}
        data: Artifact | None = None
        if producer is not None:
            ex = store.execution(producer)
            ex_props = props(ex)
            data = store.execution_inputs(producer).get("examples")
        blessing = latest_blessing(store, model.id)  # type: ignore[arg-type]
        review = latest_review(store, model.id)  # type: ignore[arg-type]
        approval = review["decision"] if review else None
        if approval is None and blessing and blessing.properties.get("require_approval"):
            approval = "pending"
        out.append(
            ModelRecord(
                version=version,
                id=model.id,
                uri=model.uri,  # type: ignore[arg-type]
                state=str(model.properties.get("_state")),
                run_id=ex_props.get("run_id"),
                created=ex_props.get("started"),
                train_metrics=dict(model.properties.get("metrics") or {}),
                eval_metrics=dict(blessing.properties.get("metrics") or {}) if blessing else {},
                blessed=bool(blessing.properties.get("blessed")) if blessing else None,
                baseline_version=blessing.properties.get("baseline_version") if blessing else None,
                approval=approval,
                pushed=model.id in pushed_ids,
                served=version == live,
                retired=version in retired,
                data_fingerprint=(data.properties.get("data_fingerprint") if data else None),
                span=(data.properties.get("span") if data else None),
            )
        )
    return out


def downstream(store: Store, model: Artifact) -> list[dict[str, Any]]:
    """What came after a model: evaluations, reviews, pushes, rollbacks and scoring jobs."""
    out = []
    for exec_id in store.consumers(model.id):  # type: ignore[arg-type]
        ex = store.execution(exec_id)
        kind = store.execution_type_name(ex)
        p = props(ex)
        item: dict[str, Any] = {
            "execution": exec_id,
            "kind": kind,
            "state": pb.Execution.State.Name(ex.last_known_state),
            "run_id": p.get("run_id"),
            "role": next(
                (k for k, a in store.execution_inputs(exec_id).items() if a.id == model.id), None
            ),
        }
        for key in ("time", *DOWNSTREAM_KEYS):
            if key in p:
                item[key] = p[key]
        item["outputs"] = {
            k: {
                "id": a.id,
                "type": a.type,
                "uri": a.uri,
                **{
                    q: a.properties[q]
                    for q in (
                        "blessed",
                        "metrics",
                        "pushed",
                        "pushed_version",
                        "reason",
                        "baseline_version",
                        "rows",
                        "rejected",
                        "healthy",
                        "alert_kinds",
                        "predictions",
                        "labelled",
                    )
                    if q in a.properties
                },
            }
            for k, a in store.execution_outputs(exec_id).items()
        }
        out.append(item)
    return out
