"""push: release a blessed (and, where required, approved) model in TF Serving's layout.

The model's ``saved_model/`` is copied to ``{serving_dir}/{pipeline}/.{version}.tmp-{pid}`` and
renamed to ``{serving_dir}/{pipeline}/{version}/`` (the registry version, an integer): a server
watching the folder (TF Serving, ``beam-pipeline serve``) never sees a half-written version, since
it ignores names that are not integers and ``os.rename`` within one file system is atomic.

Not pushed (the output says why in ``reason``, and the stage logs it): the blessing is for another
model; the model is not blessed; ``evaluate.require_approval`` and no approval yet (``beam-pipeline
approve CONFIG --model N``, then ``beam-pipeline run CONFIG --only push``) or the latest review
rejected it; the version was rolled back (``beam-pipeline rollback``).

The review decision, the rollback state and whether the version folder exists are part of the
cache key (resolved in `prepare`), so ``run --only push`` after an approval pushes instead of
reusing the earlier "awaiting approval" result.

Output:
    pushed_model (PushedModel): ``push.json`` (the properties). Properties: ``pushed``,
        ``pushed_version`` (null when not pushed), ``model_version``, ``model_id``,
        ``serving_path``, ``reason``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from beam_pipeline.core import registry
from beam_pipeline.core.artifacts import Artifact, saved_model_dir
from beam_pipeline.core.stage import Prepared, Stage, StageContext
from beam_pipeline.core.stage_sections import PushSection
from beam_pipeline.io import filesystem

log = logging.getLogger(__name__)

# ``.{version}.tmp-{pid}``: a push's staging folder beside the versions (`doctor` removes those
# whose push is gone).
STAGING = re.compile(r"^\.(\d+)\.tmp-(\d+)$")


def copy_atomically(source: Path, target: Path) -> None:
    """Copy a folder to ``target`` through a hidden sibling and one rename.

    On an object store, which cannot rename, the files are copied in place with
    ``saved_model.pb`` last: TF Serving treats a version folder as loadable once that file exists.
    """
    staging = f".{target.name}.tmp-{os.getpid()}"
    filesystem.copy_folder_atomically(source, target, staging, last=["saved_model.pb"])


def decide(
    blessing: Artifact,
    model_id: int | None,
    review: dict[str, Any] | None,
    retired: bool,
    config_file: str = "CONFIG",
) -> str | None:
    """Why the model must not be pushed, or None when it may be."""
    props = blessing.properties
    if props.get("model_id") is not None and model_id is not None and props["model_id"] != model_id:
        return (
            f"the blessing (artifact {blessing.id}) is for model artifact {props['model_id']}, "
            f"not {model_id}: run evaluate for this model first"
        )
    if not props.get("blessed"):
        failed = props.get("failed") or []
        return "not blessed: " + ("; ".join(failed) if failed else "see reasons.json")
    if review and review["decision"] == "rejected":
        note = f": {review['comment']}" if review.get("comment") else ""
        return f"rejected by {review['user']}{note}"
    if props.get("require_approval") and not (review and review["decision"] == "approved"):
        version = props.get("model_version")
        return (
            f"awaiting approval: beam-pipeline approve {config_file} --model {version}, then "
            f"beam-pipeline run {config_file} --only push"
        )
    if retired:
        return f"version {props.get('model_version')} was rolled back; it is not pushed again"
    return None


def prepare(section: PushSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    model = inputs["model"]
    store = ctx.store
    version = registry.version_of(store, model) if store is not None and model.id else None
    review = registry.latest_review(store, model.id) if store is not None and model.id else None
    retired = version in registry.retired_versions(store) if store is not None else False
    target = registry.model_dir(ctx.config) / str(version) if version else None
    state = {
        "version": version,
        "review": review,
        "retired": retired,
        "target": str(target) if target else None,
    }
    # A folder that an earlier push wrote and someone removed must be pushed again; a folder
    # that exists because this very push ran keeps the cache (a rerun is a cache hit).
    pushed_before = store is not None and any(
        a.properties.get("pushed_version") == version
        and a.properties.get("serving_path") == str(target)
        for a in store.artifacts_of_type("PushedModel")
    )
    key = {
        "review": (review or {}).get("execution"),
        "retired": retired,
        "removed_since_push": bool(pushed_before and target and not target.is_dir()),
        "serving_dir": str(target),
    }
    return Prepared(key=key, state=state)


def run(
    section: PushSection, inputs: dict[str, Artifact], ctx: StageContext
) -> dict[str, Artifact]:
    """Push when allowed. Returns {"pushed_model": PushedModel}."""
    t0 = time.time()
    model, blessing = inputs["model"], inputs["blessing"]
    state = ctx.prepared
    version = state.get("version") or blessing.properties.get("model_version")
    reason = decide(
        blessing,
        model.id,
        state.get("review"),
        bool(state.get("retired")),
        ctx.config.source_file or "CONFIG",
    )
    target = (
        filesystem.as_path(state["target"])
        if state.get("target")
        else (registry.model_dir(ctx.config) / str(version))
    )
    pushed_version = None
    if reason is None:
        if target.is_dir():
            reason = f"already pushed: {target}"
        else:
            copy_atomically(saved_model_dir(model), target)
            reason = f"pushed to {target}"
        pushed_version = int(version)
    out = ctx.output(
        "pushed_model",
        "PushedModel",
        pushed=pushed_version is not None,
        pushed_version=pushed_version,
        model_version=version,
        model_id=model.id,
        serving_path=str(target),
        reason=reason,
    )
    filesystem.write_text(out.path / "push.json", json.dumps(out.properties, indent=1))
    if pushed_version is None:
        log.warning("push: model v%s not pushed: %s", version, reason)
    else:
        log.info("push: model v%s → %s, %.1f s", version, target, time.time() - t0)
    return {"pushed_model": out}


STAGE = Stage(
    name="push",
    section=PushSection,
    run=run,
    prepare=prepare,
    inputs={"model": "train.model", "blessing": "evaluate.blessing"},
    outputs={"pushed_model": "PushedModel"},
)
