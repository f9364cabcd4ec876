"""Beam pipeline options from the config (and the CLI's --runner / --beam-option)."""

from __future__ import annotations

from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.config import Config

LOCAL_RUNNERS = {"DirectRunner", "direct", "PortableRunner", "PrismRunner"}


def beam_args(config: Config, extra: list[str] | None = None) -> list[str]:
    """The Beam flags for this config: runner, its options, and --setup_file for remote runners."""
    beam = config.beam
    args = [f"--runner={beam.runner}", *beam.options, *(extra or [])]
    runner = _last_value(args, "--runner") or beam.runner
    if runner in ("DirectRunner", "direct"):
        args += [
            f"--direct_running_mode={beam.direct_running_mode}",
            f"--direct_num_workers={beam.direct_num_workers}",
        ]
    elif runner not in LOCAL_RUNNERS and not any(a.startswith("--setup_file") for a in args):
        # Remote workers install the same package (and so the same DoFns) from our setup.py.
        setup = Path(__file__).resolve().parent.parent / "setup.py"
        args.append(f"--setup_file={setup}")
    return args


def pipeline_options(config: Config, extra: list[str] | None = None) -> PipelineOptions:
    return PipelineOptions(beam_args(config, extra))


def _last_value(args: list[str], flag: str) -> str | None:
    value = None
    for a in args:
        if a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value
