"""The stage contract: what a stage declares, and what it receives while it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beam_pipeline.core.artifacts import Artifact
from beam_pipeline.io import filesystem

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipeline.core.config import Config
    from beam_pipeline.core.metadata import Store


@dataclass
class StageContext:
    """Handed to a stage's functions by the orchestrator."""

    stage: str
    config: Config
    store: Store
    run_id: str
    output_dir: Path  # the staging folder; published under its final name only on success
    beam_args: list[str] = field(default_factory=list)
    prepared: dict[str, Any] = field(default_factory=dict)  # what `Stage.prepare` returned

    def output(self, key: str, type_name: str, **properties: Any) -> Artifact:
        """A new output artifact whose folder is ``{output_dir}/{key}`` (created here)."""
        uri = self.output_dir / key
        filesystem.makedirs(uri)
        return Artifact(type_name, str(uri), dict(properties))

    def beam_options(self) -> PipelineOptions:
        from beam_pipeline.runners.options import pipeline_options

        return pipeline_options(self.config, self.beam_args)


@dataclass(frozen=True)
class Prepared:
    """What a stage resolves before the cache is consulted.

    ``key`` is extra cache-key material (source file digests, a user module's source hash, a
    baseline's fingerprint); ``inputs`` are extra input artifacts found in ML Metadata (recorded as
    inputs for lineage, keyed by fingerprint, and handed to `run` with the declared inputs);
    ``state`` is handed to `run` as `ctx.prepared`.
    """

    key: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Artifact] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


RunFn = Callable[[Any, dict[str, Artifact], StageContext], dict[str, Artifact]]
PrepareFn = Callable[[Any, dict[str, Artifact], StageContext], Prepared]
GateFn = Callable[[Any, dict[str, Artifact]], None]


@dataclass(frozen=True)
class Stage:
    """One node of the pipeline DAG.

    Attributes:
        name: the stage name, also its config section and its MLMD execution type.
        section: the dataclass of its config section.
        run: ``run(section, inputs, ctx) -> outputs``; writes only under ``ctx.output_dir``;
            ``inputs`` holds the declared inputs and those `prepare` found.
        inputs: input key -> ``"upstream_stage.output_key"``.
        outputs: output key -> artifact type.
        prepare: optional; resolves extra cache-key material and inputs (see `Prepared`).
        gate: optional; called with the outputs (fresh or cached); raises to stop the run.
        deterministic: the outputs are a function of the cache key (same inputs, config and code
            give the same content), so an output's fingerprint is derived from the key; otherwise
            (training, tuning, evaluation) it also names the execution that produced it.
        after: stages that must finish first although none of their outputs is read (ordering
            only: not an input, not part of the cache key).
    """

    name: str
    section: type
    run: RunFn
    inputs: dict[str, str]
    outputs: dict[str, str]
    prepare: PrepareFn | None = None
    gate: GateFn | None = None
    optional_inputs: frozenset[str] = frozenset()
    after: frozenset[str] = frozenset()
    deterministic: bool = False
    config_key: str = ""  # its YAML section when that differs from the name ("validation")
    # Config fields left out of the cache key because `prepare` keys their content instead
    # (a data path, a module path): moving a file without changing it keeps the cache.
    cache_exempt: frozenset[str] = frozenset()

    @property
    def section_name(self) -> str:
        return self.config_key or self.name
