"""The public Python API: load a config, run the pipeline (or one stage), look at the artifacts.

It drives the same orchestrator, cache and ML Metadata store as ``beam-pipeline run``, so a
notebook run and a CLI run see each other's results::

    import beam_pipeline as bp

    p = bp.load("configs/penguins.yaml", overrides=["tune.enabled=false"])
    run = p.run(to="validate")      # a Run: stages, statuses, outputs
    run.output("statistics")        # an Artifact; Jupyter shows its HTML view
    p.run_stage("transform")        # one stage, on the latest results of the stages before it
    p.models(); p.approve(1, comment="looks good")

A stage that fails raises the exception (and message) the CLI prints: `StageFailed`, or
`ValidationFailed` when the validation gate stops the run. Nothing here exits the process.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beam_pipeline.core.artifacts import Artifact as _CoreArtifact
from beam_pipeline.core.config import Config
from beam_pipeline.core.errors import PipelineError, StageFailed, ValidationFailed

if TYPE_CHECKING:
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.core.orchestrator import Orchestrator, RunResult

__all__ = ["Artifact", "Pipeline", "Run", "load", "show", "write_report"]

# This process's runs (a notebook kernel's): recorded on each run as its ``session``.
SESSION = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Artifact(_CoreArtifact):
    """An output artifact (type, uri, properties, id) that displays itself in Jupyter."""

    @classmethod
    def of(cls, art: _CoreArtifact) -> Artifact:
        return cls(**{f.name: getattr(art, f.name) for f in dataclasses.fields(art)})

    def _repr_html_(self) -> str:
        from beam_pipeline.views import render

        return render(self)

    def html(self) -> str:
        """The same view as a string (what the report and the UI show)."""
        return self._repr_html_()


@dataclasses.dataclass
class Run:
    """The result of `Pipeline.run`: the CLI's JSON summary plus the output artifacts."""

    result: RunResult
    outputs: dict[str, Artifact]  # "stage.key" -> artifact (fresh or cached)

    @property
    def run_id(self) -> str:
        return self.result.run_id

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return self.result.stages

    def output(self, stage: str, key: str | None = None) -> Artifact:
        """A stage's output: its only one, or the one named ``key``."""
        prefix = stage + "."
        found = {k[len(prefix) :]: a for k, a in self.outputs.items() if k.startswith(prefix)}
        if not found:
            raise KeyError(f"stage {stage!r} has no outputs in run {self.run_id}; ran: {self.ran}")
        if key is None:
            if len(found) > 1:
                raise KeyError(f"stage {stage!r} has outputs {sorted(found)}; name one")
            return next(iter(found.values()))
        return found[key]

    @property
    def ran(self) -> list[str]:
        return [s for s, info in self.stages.items() if info.get("status") != "skipped"]

    def to_json(self) -> dict[str, Any]:
        return self.result.to_json()

    def _repr_html_(self) -> str:
        from beam_pipeline.views.artifacts import badge, esc, table, wrap

        rows = [
            [name, info.get("status"), info.get("seconds"), ", ".join(info.get("outputs", {}))]
            for name, info in self.stages.items()
        ]
        head = (
            f"<h3>run {self.run_id} "
            + badge(self.status == "completed", self.status, self.status)
            + "</h3>"
        )
        err = f"<pre class='bad'>{esc(self.result.error)}</pre>" if self.result.error else ""
        return wrap(head + err + table(["stage", "status", "seconds", "outputs"], rows))


class Pipeline:
    """One pipeline config and its metadata store."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._store: Store | None = None
        self._overrides: list[str] = []

    @property
    def name(self) -> str:
        return self.config.pipeline.name

    @property
    def store(self) -> Store:
        """The ML Metadata store (one per Pipeline: an in-memory store lives as long as it)."""
        if self._store is None:
            from beam_pipeline.core.metadata import Store

            self._store = Store(self.config)
        return self._store

    # ---- running ------------------------------------------------------------------------------

    def run(
        self,
        from_: str | None = None,
        to: str | None = None,
        only: str | None = None,
        *,
        use_cache: bool = True,
        beam_args: list[str] | None = None,
        progress: bool = True,
    ) -> Run:
        """Run the pipeline (or ``from_``..``to``, or ``only`` one stage), like the CLI's ``run``.

        Raises:
            StageFailed: a stage failed (the message names it and the command that resumes).
            ValidationFailed: the validation gate stopped the run.
            ConfigError: an unknown stage name, or a config the stages reject.
        """
        from beam_pipeline import progress as progress_mod
        from beam_pipeline.core import preflight
        from beam_pipeline.core.orchestrator import select
        from beam_pipeline.core.stage_sections import STAGE_ORDER

        preflight.check(self.config, select(STAGE_ORDER, from_, to, only), beam_args)
        orch = self.orchestrator(beam_args=beam_args, use_cache=use_cache)
        with progress_mod.session(enabled=progress):
            result = orch.run(from_, to, only)
        # The UI folds the stage-runs of one notebook (this process) into one line.
        self.store.run_context(result.run_id, session=SESSION)
        run = Run(result, self._outputs(result))
        if result.error is not None:
            raise _exception(result)
        return run

    def orchestrator(
        self,
        *,
        beam_args: list[str] | None = None,
        use_cache: bool = True,
        command: str | None = None,
    ) -> Orchestrator:
        """The orchestrator over this pipeline's stages and store (the CLI's ``run`` uses it
        too). ``command`` is the command line a failure message offers to resume with; by
        default ``beam-pipeline run CONFIG --set=...`` with this pipeline's overrides."""
        from beam_pipeline.core.orchestrator import Orchestrator
        from beam_pipeline.stages import STAGES

        if command is None:
            sets = [f"--set={o}" for o in self._overrides]
            command = shlex.join(["beam-pipeline", "run", self.config.source_file, *sets])
        return Orchestrator(
            self.config,
            STAGES,
            beam_args=beam_args,
            use_cache=use_cache,
            command=command,
            store=self.store,  # one store: an in-memory one must be shared between runs
        )

    def score(
        self,
        input: str,
        output: str | os.PathLike[str],
        *,
        model: int | None = None,
        format: str = "jsonl",
        input_format: str | None = None,
        batch_size: int = 8192,
        beam_args: list[str] | None = None,
    ) -> dict[str, Any]:
        """``beam-pipeline score``: the batch scoring job (`beam_pipeline.jobs.score`) over the
        files ``input`` names, predictions under ``output``, recorded as a ``score`` execution
        of the same executor as the stages. Returns its summary (rows, rejected, execution,
        artifact: the ``InferenceResult``'s id).

        Raises:
            ConfigError: no such files or model version, an output that holds predictions.
            DataError: the files lack a column the model needs.
        """
        from beam_pipeline.jobs.score import score

        return score(
            self.config,
            str(input),
            str(output),
            model_version=model,
            output_format=format,
            input_format=input_format,
            batch_size=batch_size,
            beam_args=beam_args,
            store=self.store,
        )

    def run_stage(self, stage: str, **kwargs: Any) -> Run:
        """Run one stage on the latest results of the stages it reads (``run --only STAGE``)."""
        return self.run(only=stage, **kwargs)

    def _outputs(self, result: RunResult) -> dict[str, Artifact]:
        ids = {
            f"{stage}.{key}": out["id"]
            for stage, info in result.stages.items()
            for key, out in (info.get("outputs") or {}).items()
            if out.get("id") is not None
        }
        by_id = {a.id: a for a in self.store.artifacts(list(ids.values()))}
        return {k: Artifact.of(by_id[i]) for k, i in ids.items() if i in by_id}

    # ---- looking back ---------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Every run (what ``beam-pipeline runs --json`` prints), oldest first."""
        return self.store.runs()

    def artifact(self, artifact_id: int) -> Artifact:
        arts = self.store.artifacts([artifact_id])
        if not arts:
            raise KeyError(f"no artifact with id {artifact_id}")
        return Artifact.of(arts[0])

    def latest(self, type_name: str) -> Artifact:
        """The newest LIVE artifact of a type (``"Schema"``, ``"ModelEvaluation"``, …)."""
        arts = self.store.artifacts_of_type(type_name)
        if not arts:
            raise KeyError(f"pipeline {self.name!r} has no LIVE {type_name} artifact yet")
        return Artifact.of(arts[0])

    def models(self) -> list[dict[str, Any]]:
        """Model versions (``beam-pipeline models --json``)."""
        from beam_pipeline.core import registry

        return [r.to_json() for r in registry.describe(self.config, self.store)]

    def model(self, version: int) -> Artifact:
        from beam_pipeline.core import registry

        return Artifact.of(registry.model_by_version(self.store, version))

    def lineage(self, artifact_id: int) -> dict[str, Any]:
        return self.store.lineage(artifact_id)

    # ---- deciding -------------------------------------------------------------------------------

    def approve(self, version: int, comment: str = "") -> dict[str, Any]:
        """Approve a model version, recorded as ``beam-pipeline approve`` records it."""
        from beam_pipeline.core import registry

        return registry.record_review(self.store, version, "approved", comment)

    def reject(self, version: int, comment: str = "") -> dict[str, Any]:
        from beam_pipeline.core import registry

        return registry.record_review(self.store, version, "rejected", comment)

    def export_schema(self, dest: str | os.PathLike[str]) -> Path:
        """Write the newest schema to ``dest`` for curation (``beam-pipeline schema --export``)."""
        from beam_pipeline.stages.schema import export_latest

        return Path(export_latest(self.store, str(dest)))

    def with_overrides(self, *overrides: str) -> Pipeline:
        """The same config file loaded again with more ``section.key=value`` overrides; it
        shares this pipeline's store."""
        other = load(self.config.source_file, [*self._overrides, *overrides])
        other._store = self._store
        return other

    # ---- showing --------------------------------------------------------------------------------

    def report(
        self, output: str | os.PathLike[str], run_id: str | None = None, model: int | None = None
    ) -> Path:
        """``beam-pipeline report``: write one offline HTML page; returns its path."""
        return write_report(self.config, output, run_id=run_id, model=model, store=self.store)

    def show(self, art: Artifact | _CoreArtifact) -> Any:
        """Display an artifact in a notebook (or return its HTML outside one)."""
        return show(art)


def load(config_file: str | os.PathLike[str], overrides: list[str] | None = None) -> Pipeline:
    """A pipeline from a YAML config with ``section.key=value`` overrides (as ``--set``)."""
    from beam_pipeline.core.config import load as load_config

    p = Pipeline(load_config(config_file, list(overrides or [])))
    p._overrides = list(overrides or [])
    return p


def show(art: _CoreArtifact) -> Any:
    """Display an artifact in Jupyter; outside a notebook, return its HTML."""
    view = Artifact.of(art)
    try:
        from IPython.display import HTML, display
    except ImportError:
        return view.html()
    display(HTML(view.html()))
    return None


def write_report(
    config: Config,
    output: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    model: int | None = None,
    store: Store | None = None,
) -> Path:
    """Write `beam_pipeline.views.report` to ``output`` (complete or not at all)."""
    from beam_pipeline.core.metadata import Store
    from beam_pipeline.views import report

    html = report.build(config, store or Store(config), run_id=run_id, model=model)
    from beam_pipeline.io import filesystem

    path = Path(output)
    filesystem.write_text_atomic(path, html)
    return path


def _exception(result: RunResult) -> PipelineError:
    """The exception the orchestrator turned into ``result.error``, rebuilt with its message."""
    text = result.error or ""
    if result.status == "stopped":
        return ValidationFailed(result.anomalies)
    match = re.match(r"stage '([^']+)' failed: ", text)
    if match:
        body, _, resume = text[match.end() :].partition("\nresume with: ")
        return StageFailed(match.group(1), body, resume, result.exit_code)
    exc = PipelineError(text)
    exc.exit_code = result.exit_code
    return exc
