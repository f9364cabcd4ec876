"""Beam pipeline options from the config (and the CLI's --runner / --beam-option)."""

from __future__ import annotations

import json
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.core.config import Config
from beam_pipeline.core.errors import ConfigError
from beam_pipeline.runners import engines

LOCAL_RUNNERS = {"DirectRunner", "direct", "PortableRunner", "PrismRunner"}


def beam_args(config: Config, extra: list[str] | None = None) -> list[str]:
    """The Beam flags for this config: runner, its options, and --setup_file for remote runners."""
    beam = config.beam
    args = [f"--runner={beam.runner}", *beam.options, *(extra or [])]
    runner = _last_value(args, "--runner") or beam.runner
    if runner in ("DirectRunner", "direct"):
        # The config's values are defaults: a flag given on the command line (``--beam-option``)
        # or in ``beam.options`` wins.
        for flag, value in (
            ("--direct_running_mode", beam.direct_running_mode),
            ("--direct_num_workers", beam.direct_num_workers),
        ):
            if _last_value(args, flag) is None:
                args.append(f"{flag}={value}")
    elif runner not in LOCAL_RUNNERS and not any(a.startswith("--setup_file") for a in args):
        # Remote workers install the same package (and so the same DoFns) from our setup.py.
        setup = Path(__file__).resolve().parents[2] / "setup.py"
        args.append(f"--setup_file={setup}")
    if runner == "DataflowRunner":
        _check_remote_locations(config, args)
    if runner in engines.BY_RUNNER:
        args += engine_args(runner, args)
    if _uses_s3(config) and not any(a.startswith("--beam_plugins") for a in args):
        # Workers load it first, so TensorFlow code inside the job (tf.Transform, model loading)
        # reads and writes s3:// as the launcher does.
        args.append("--beam_plugins=beam_pipeline.io.s3_plugin")
    return args


def engine_args(runner: str, args: list[str]) -> list[str]:
    """SparkRunner/FlinkRunner: Beam's job-server jar from the cache and the SDK workers' boot.

    Beam would download the jar at run time; here it must come from the cache (``scripts/cluster
    ENGINE fetch``) or be named. The engine's workers start each SDK harness themselves as a
    process (``--environment_type=PROCESS``) through ``scripts/beam-worker``, which boots it the
    way Beam's container does (the job's options first); every engine machine needs the same
    checkout at the same path. Both stay as given when the user passes them.
    """
    engine = engines.BY_RUNNER[runner]
    added = []
    if _last_value(args, engine.jar_flag) is None and _last_value(args, "--job_endpoint") is None:
        added.append(f"{engine.jar_flag}={engines.find_job_server(runner)}")
    if _last_value(args, "--environment_type") is None:
        boot = Path(__file__).resolve().parents[2] / "scripts" / "beam-worker"
        added += [
            "--environment_type=PROCESS",
            f"--environment_config={json.dumps({'command': str(boot)})}",
        ]
    return added


def _uses_s3(config: Config) -> bool:
    ingest = config.stages.get("ingest")
    sources = [config.pipeline.root, str(getattr(ingest, "source", "") or "")]
    return any(s.startswith("s3://") for s in sources)


def _check_remote_locations(config: Config, args: list[str]) -> None:
    """Dataflow workers share nothing with the launcher: root and temp files must be remote."""
    if "://" not in config.pipeline.root:
        raise ConfigError(
            f"pipeline.root: DataflowRunner workers cannot reach the local folder "
            f"{config.pipeline.root!r}; set it to a gs:// URI"
        )
    for flag in ("--temp_location", "--staging_location"):
        value = _last_value(args, flag)
        if value is not None and "://" not in value:
            raise ConfigError(f"{flag}: DataflowRunner needs a gs:// location; received {value!r}")
    if _last_value(args, "--temp_location") is None:
        raise ConfigError(
            "--temp_location: DataflowRunner needs one (--beam-option=--temp_location=gs://...)"
        )


def pipeline_options(config: Config, extra: list[str] | None = None) -> PipelineOptions:
    return PipelineOptions(beam_args(config, extra))


def runs_in_process(config: Config, extra: list[str] | None, output: str) -> bool:
    """Whether a job may run without a Beam runner, in this process: DirectRunner in its
    ``in_memory`` mode (one thread of this process runs the DoFns anyway) writing to a local
    folder. Any other runner, ``multi_processing`` and object-store outputs go through Beam.
    `jobs.score` and `monitoring.job` have such a path (docs/stages.md, docs/monitoring.md)."""
    from beam_pipeline.io import filesystem

    args = beam_args(config, extra)
    return (
        _last_value(args, "--runner") in ("DirectRunner", "direct")
        and _last_value(args, "--direct_running_mode") in (None, "in_memory")
        and not filesystem.is_remote(output)
    )


def _last_value(args: list[str], flag: str) -> str | None:
    value = None
    for a in args:
        if a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value
