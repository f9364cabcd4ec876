"""The tune stage: a Keras Tuner search over the model module's search space.

The search space is whatever ``build_model(hp, tf_transform_output)`` declares with
``hp.Choice/Int/Float/Boolean``; values in ``train.hyperparameters`` are held fixed. Keras is
tf_keras with keras-tuner 1.3.5 (keras-tuner 1.4 only accepts Keras 3 models).

Distributed tuning uses keras-tuner's chief/worker mode, driven by the environment:
``KERASTUNER_TUNER_ID`` (``chief`` for the process that runs this stage, ``tuner0``, ``tuner1``…
for the workers), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (where the chief serves
the oracle). The chief runs ``beam-pipeline run CONFIG --only tune``; each worker runs
`run_worker` (``beam-pipeline tune-worker CONFIG``) against the same metadata store, on the
transform outputs of the latest completed run. Trials are shared among the workers; the chief
holds every result and writes the artifact.

Output:
    hyperparameters (HyperParameters): ``best_hyperparameters.json`` (``values``, ``source``:
        ``search`` or ``defaults``, ``objective``, ``score``) and ``trials.txt`` (one line per
        trial, best first). Properties: ``values``, ``source``, ``score``, ``trials``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from beam_pipeline import progress
from beam_pipeline.core.artifacts import Artifact, hyperparameters_path
from beam_pipeline.core.errors import ConfigError, StageFailed
from beam_pipeline.core.stage import Prepared, Stage, StageContext
from beam_pipeline.core.stage_sections import TuneSection
from beam_pipeline.io import filesystem
from beam_pipeline.training import modeling

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The search (also run by workers)


@dataclass(frozen=True)
class SearchInputs:
    """What a search needs, whether it runs in the stage or in a worker process."""

    transform_graph: str
    transformed_examples: str
    row_counts: dict[str, int]
    module: str
    fixed: dict[str, Any]
    batch_size: int
    shuffle_buffer: int = 10_000


def search(section: TuneSection, job: SearchInputs, directory: str) -> dict[str, Any]:
    """Runs the tuner in this process; returns the summary (chief or single process) or {}.

    In chief/worker mode (``KERASTUNER_*`` set) a worker returns {} after its share of trials.
    """
    import keras_tuner
    import tensorflow_transform as tft
    import tf_keras

    modeling.exempt_libraries_from_autograph()
    module = modeling.load_model_module(job.module)
    tft_output = tft.TFTransformOutput(job.transform_graph)
    module.check_label(tft_output)
    objective = keras_tuner.Objective(section.objective, section.objective_direction)
    hp = modeling.hyperparameters(fixed=job.fixed)
    common: dict[str, Any] = {
        "hypermodel": lambda hp: module.build(hp, tft_output),
        "objective": objective,
        "hyperparameters": hp,
        "tune_new_entries": True,
        "seed": section.seed,
        "executions_per_trial": section.executions_per_trial,
        "directory": directory,
        "project_name": "search",
        "overwrite": True,
    }
    kinds = {
        "random": keras_tuner.RandomSearch,
        "bayesian": keras_tuner.BayesianOptimization,
    }
    with _fast_chief():
        if section.algorithm == "hyperband":
            tuner = keras_tuner.Hyperband(max_epochs=section.epochs, factor=3, **common)
        else:
            tuner = kinds[section.algorithm](max_trials=section.max_trials, **common)
    if _is_worker():
        _search(tuner, section, job, module, tft_output, tf_keras)
        return {}
    if not _is_chief():
        _search(tuner, section, job, module, tft_output, tf_keras)
    return _summary(tuner, section)


def _search(
    tuner: Any,
    section: TuneSection,
    job: SearchInputs,
    module: modeling.ModelModule,
    tft_output: Any,
    tf_keras: Any,
) -> None:
    train_ds, eval_ds = modeling.train_eval_datasets(
        job.transformed_examples,
        tft_output,
        module.label_key,
        job.batch_size,
        eval_steps=section.eval_steps,
        shuffle_buffer=job.shuffle_buffer,
        seed=section.seed,
    )
    callbacks = [
        progress.keras_callback(
            "tune",
            section.max_trials if section.algorithm != "hyperband" else None,
            objective=section.objective,
            direction=section.objective_direction,
        )
    ]
    if section.early_stopping_patience:
        callbacks.append(
            tf_keras.callbacks.EarlyStopping(
                monitor=section.objective,
                mode=section.objective_direction,
                patience=section.early_stopping_patience,
            )
        )
    fit_args: dict[str, Any] = {
        "validation_data": eval_ds,
        "steps_per_epoch": section.steps_per_epoch,
        "callbacks": callbacks,
        "verbose": 0,
    }
    if section.algorithm != "hyperband":
        fit_args["epochs"] = section.epochs
    try:
        tuner.search(train_ds, **fit_args)
    except ConfigError:
        raise
    except Exception as exc:
        raise StageFailed("tune", f"the search failed: {type(exc).__name__}: {exc}") from exc


def _summary(tuner: Any, section: TuneSection) -> dict[str, Any]:
    trials = [t for t in tuner.oracle.trials.values() if t.score is not None]
    if not trials:
        raise ConfigError(
            f"tune.objective: no trial reported {section.objective!r}; expected one of the "
            "metrics the model compiles (val_ + metric name)"
        )
    best = tuner.oracle.get_best_trials(1)[0]
    reverse = section.objective_direction == "max"
    trials.sort(key=lambda t: t.score, reverse=reverse)
    lines = [f"{len(trials)} trials, objective {section.objective} ({section.objective_direction})"]
    for t in trials:
        values = ", ".join(f"{k}={v}" for k, v in sorted(t.hyperparameters.values.items()))
        lines.append(f"trial {t.trial_id}: {section.objective}={t.score:.5f}  {values}")
    return {
        "values": dict(best.hyperparameters.values),
        "score": float(best.score),
        "trials": len(trials),
        "summary": "\n".join(lines) + "\n",
    }


def _is_worker() -> bool:
    return "KERASTUNER_ORACLE_IP" in os.environ and not _is_chief()


def _is_chief() -> bool:
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" in os.environ.get(
        "KERASTUNER_TUNER_ID", ""
    )


@contextlib.contextmanager
def _fast_chief() -> Iterator[None]:
    """keras-tuner 1.3.5's chief polls every 30 s and lingers 30 s more: poll each second instead.

    The chief serves the oracle from inside the tuner's constructor until a worker is told to stop
    and no trial is still running.
    """
    if not _is_chief():
        yield
        return
    from keras_tuner.distribute import oracle_chief

    original = oracle_chief.start_server
    oracle_chief.start_server = _serve_oracle
    try:
        yield
    finally:
        oracle_chief.start_server = original


def _serve_oracle(oracle: Any) -> None:
    from concurrent import futures

    import grpc
    from keras_tuner import protos
    from keras_tuner.distribute.oracle_chief import OracleServicer

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(address)
    server.start()
    log.info("tune: chief serves the oracle on %s", address)
    while not (servicer.stop_triggered and not oracle.ongoing_trials):
        time.sleep(1)
    time.sleep(2)  # let the last workers' calls land
    server.stop(5)


# ---------------------------------------------------------------------------------------------
# The stage


def prepare(section: TuneSection, inputs: dict[str, Artifact], ctx: StageContext) -> Prepared:
    if section.enabled and section.algorithm == "bayesian":
        try:
            import scipy  # noqa: F401
            import sklearn  # noqa: F401
        except ImportError:
            raise ConfigError(
                "tune.algorithm: bayesian needs scipy and scikit-learn (pip install "
                "'keras-tuner[bayesian]==1.3.5'); or choose random or hyperband"
            ) from None
    train = ctx.config.section("train")
    modeling.load_model_module(train.module)
    return Prepared(
        key={
            "module_hash": modeling.model_module_hash(train.module),
            "fixed": train.hyperparameters,
            "batch_size": train.batch_size,
        }
    )


def run(
    section: TuneSection, inputs: dict[str, Artifact], ctx: StageContext
) -> dict[str, Artifact]:
    """Search (or take the defaults). Returns {"hyperparameters": HyperParameters}."""
    t0 = time.time()
    train = ctx.config.section("train")
    job = _job(inputs, train)
    out = ctx.output("hyperparameters", "HyperParameters")
    if section.enabled:
        # The tuner's scratch files stay on a local disk (an object store's root would do too,
        # but each trial's checkpoints would cross the network for nothing).
        local = not filesystem.is_remote(ctx.output_dir)
        directory = tempfile.mkdtemp(prefix="tuner-", dir=ctx.output_dir if local else None)
        try:
            result = search(section, job, directory)
        finally:
            filesystem.rmtree(directory)
        source = "search"
    else:
        import tensorflow_transform as tft

        module = modeling.load_model_module(job.module)
        tft_output = tft.TFTransformOutput(job.transform_graph)
        module.check_label(tft_output)
        values = modeling.default_values(module, tft_output, job.fixed)
        result = {
            "values": values,
            "score": None,
            "trials": 0,
            "summary": "tuning disabled: the search space's defaults\n",
        }
        source = "defaults"
    document = {
        "values": result["values"],
        "source": source,
        "objective": section.objective,
        "direction": section.objective_direction,
        "score": result["score"],
        "algorithm": section.algorithm if section.enabled else None,
    }
    filesystem.write_text(hyperparameters_path(out), json.dumps(document, indent=2) + "\n")
    filesystem.write_text(out.path / "trials.txt", result["summary"])
    out.properties.update(
        values=result["values"], source=source, score=result["score"], trials=result["trials"]
    )
    log.info(
        "tune: %s, %d trials, best %s=%s, %.1f s",
        source,
        result["trials"],
        section.objective,
        result["score"],
        time.time() - t0,
    )
    return {"hyperparameters": out}


def _job(inputs: dict[str, Artifact], train: Any) -> SearchInputs:
    examples = inputs["transformed_examples"]
    return SearchInputs(
        transform_graph=inputs["transform_graph"].uri,
        transformed_examples=examples.uri,
        row_counts=dict(examples.properties.get("row_counts", {})),
        module=str(train.module),
        fixed=dict(train.hyperparameters),
        batch_size=train.batch_size,
        shuffle_buffer=train.shuffle_buffer,
    )


def run_worker(config_file: str, overrides: list[str] | None = None) -> None:
    """A keras-tuner worker (``KERASTUNER_TUNER_ID=tunerN`` etc. set) for ``beam-pipeline``.

    Reads the latest completed transform outputs from the config's metadata store and runs its
    share of the chief's trials. Exits when the chief's oracle says the search is over.
    """
    from beam_pipeline.core.config import load
    from beam_pipeline.core.metadata import Store

    if not _is_worker():
        raise ConfigError(
            "tune worker: expected KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT and "
            "KERASTUNER_TUNER_ID (not 'chief') in the environment"
        )
    config = load(config_file, overrides)
    store = Store(config)
    try:
        outputs = store.latest_outputs("transform", required=True)
    finally:
        store.close()
    job = _job(outputs, config.section("train"))
    with tempfile.TemporaryDirectory(prefix="tuner-worker-") as directory:
        search(config.section("tune"), job, directory)


STAGE = Stage(
    name="tune",
    section=TuneSection,
    run=run,
    prepare=prepare,
    inputs={
        "transform_graph": "transform.transform_graph",
        "transformed_examples": "transform.transformed_examples",
    },
    outputs={"hyperparameters": "HyperParameters"},
)
