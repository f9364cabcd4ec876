"""The whole config checked before the first stage runs (`check`).

Loading a config (`beam_pipeline.core.config.load`) already checks keys, types and values. This
looks at what a run will touch, for the stages it will run: the data source and curated schema
exist, the user modules import and define what the stages call, the column names the config
uses are columns of the data, and the Beam runner and options are ones Beam knows. Every problem
is collected, then raised as one `ConfigError` (exit 2) naming the file, the key and an example
to copy, so a mistake costs seconds, not the minutes of the stages before the one that needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import glob
import inspect
import io
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beam_pipeline.core.config import Config
from beam_pipeline.core.errors import ConfigError, PipelineError
from beam_pipeline.core.user_modules import load_module

USER_MODULES = "docs/stages.md#user-modules"
SCAFFOLD = "beam-pipeline init NAME --data FILE --label COLUMN"

# What each stage needs from the config's user modules.
MODULE_STAGES = {"transform": "transform", "tune": "train", "train": "train"}

EXAMPLES = {
    "transform.module": (
        "transform:\n  module: ../transforms/taxi.py   # defines preprocessing_fn(inputs)"
    ),
    "train.module": (
        "train:\n  module: ../models/taxi.py   # defines LABEL_KEY and build_model(hp, "
        "tf_transform_output)"
    ),
    "ingest.source": "ingest:\n  source: ../data/chicago_taxi/data.csv   # a path or a glob",
    "schema.path": "schema:\n  path: null   # inferred; or a file from `beam-pipeline schema "
    "--export`",
    "beam.runner": "beam:\n  runner: DirectRunner   # or PortableRunner, DataflowRunner, "
    "FlinkRunner, SparkRunner",
    "beam.options": "beam:\n  options: [--direct_num_workers=2]",
}


@dataclass(frozen=True)
class Problem:
    key: str
    message: str

    def text(self) -> str:
        example = EXAMPLES.get(self.key)
        tail = "\n  for example:\n" + textwrap.indent(example, "    ") if example else ""
        return f"{self.key}: {self.message}{tail}"


def check(config: Config, stages: list[str], beam_args: list[str] | None = None) -> None:
    """Raise one ConfigError listing every problem the selected ``stages`` would meet."""
    problems: list[Problem] = []
    if "ingest" in stages:
        problems += _source(config)
    problems += _schema(config, stages)
    problems += _modules(config, stages)
    problems += _columns(config, stages)
    problems += _runner(config, beam_args or [])
    if problems:
        where = config.source_file or "config"
        listed = "\n".join(f"- {p.text()}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        raise ConfigError(f"{where}: {len(problems)} {noun} found before any stage ran:\n{listed}")


def _local(path: str | None) -> bool:
    return bool(path) and "://" not in str(path)


def _source(config: Config) -> list[Problem]:
    source = config.section("ingest").source
    if not _local(source):
        return []
    pattern = source.replace("{SPAN}", "*")
    if glob.glob(pattern) or Path(pattern).is_file():
        return []
    return [Problem("ingest.source", f"no file matches {source}")]


def _schema(config: Config, stages: list[str]) -> list[Problem]:
    path = config.section("schema").path
    if {"schema", "validate"} & set(stages) and _local(path) and not Path(path).is_file():
        return [Problem("schema.path", f"curated schema file not found: {path}")]
    return []


def _modules(config: Config, stages: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    sections = list(dict.fromkeys(MODULE_STAGES[s] for s in stages if s in MODULE_STAGES))
    for section in sections:
        key = f"{section}.module"
        path = config.section(section).module
        if not path:
            problems.append(
                Problem(
                    key,
                    f"a user module is required; received nothing (what it defines: "
                    f"{USER_MODULES}; to write one from your data: {SCAFFOLD})",
                )
            )
            continue
        if not Path(path).is_file():
            problems.append(Problem(key, f"user module file not found: {path}"))
            continue
        try:
            module = load_module(path, key)
        except ConfigError as exc:
            problems.append(Problem(key, str(exc).removeprefix(f"{key}: ")))
            continue
        problems += _contract(section, key, path, module)
    return problems


def _contract(section: str, key: str, path: str, module: Any) -> list[Problem]:
    out: list[Problem] = []

    def function(name: str, params: int, signature: str) -> None:
        fn = getattr(module, name, None)
        if not callable(fn):
            found = "nothing" if fn is None else type(fn).__name__
            out.append(Problem(key, f"{path} must define {signature}; found {found}"))
            return
        with contextlib.suppress(TypeError, ValueError):
            try:
                inspect.signature(fn).bind(*range(params))
            except TypeError:
                out.append(
                    Problem(key, f"{path}: {name} must take {params} argument(s): {signature}")
                )

    if section == "transform":
        function("preprocessing_fn", 1, "preprocessing_fn(inputs) -> dict")
        raw = getattr(module, "RAW_LABEL_KEYS", ())
        if isinstance(raw, str) or not all(isinstance(k, str) for k in raw):
            out.append(
                Problem(
                    key,
                    f"{path}: RAW_LABEL_KEYS must be a tuple of column names, e.g. "
                    f"('tips',); found {raw!r}",
                )  # fmt: skip
            )
    else:
        label = getattr(module, "LABEL_KEY", None)
        if not isinstance(label, str) or not label:
            out.append(
                Problem(
                    key,
                    f"{path} must define LABEL_KEY, the transformed label's name "
                    f"(e.g. LABEL_KEY = 'big_tipper'); found {label!r}",
                )  # fmt: skip
            )
        function("build_model", 2, "build_model(hp, tf_transform_output) -> tf_keras.Model")
    return out


def _columns(config: Config, stages: list[str]) -> list[Problem]:
    """Column names the config uses that the data does not have (a local CSV, Parquet or JSON
    Lines source; its header or schema only)."""
    ingest = config.section("ingest")
    if not _local(ingest.source) or ingest.format == "tfrecord" or "{SPAN}" in ingest.source:
        return []
    files = sorted(glob.glob(ingest.source))
    if not files:
        return []
    try:
        from beam_pipeline.io import readers

        if ingest.format == "csv":
            names = readers.csv_header(files[0])
        elif ingest.format == "parquet":
            names = list(readers.parquet_columns(files[0]))
        else:
            names = list(readers.jsonl_columns(files[0], sample_lines=100))
    except (PipelineError, OSError, ValueError):
        return []  # ingest reports an unreadable file with its line
    known = set(names)
    used: list[tuple[str, str]] = []
    problems = []
    if "ingest" in stages:
        from beam_pipeline.io import names as tensor_names

        for name in tensor_names.unsafe(names, ingest.drop):
            problems.append(Problem("ingest", tensor_names.problem(name, files[0])))
    if "ingest" in stages:
        used += [(f"ingest.columns.{c}", c) for c in ingest.columns]
        used += [(f"ingest.drop[{i}]", c) for i, c in enumerate(ingest.drop)]
        if ingest.split.key:
            used.append(("ingest.split.key", ingest.split.key))
    if "evaluate" in stages:
        evaluate = config.section("evaluate")
        for i, spec in enumerate(evaluate.slices):
            for name in [spec] if isinstance(spec, str) else spec:
                used.append((f"evaluate.slices[{i}]", name))
        used += [(f"evaluate.bucket_boundaries.{c}", c) for c in evaluate.bucket_boundaries]
    shown = names if len(names) <= 30 else [*names[:30], "..."]
    for key, name in used:
        if name not in known:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                Problem(key, f"no column {name!r} in {files[0]}{hint}; columns are {shown}")
            )
    return problems


def _runner(config: Config, extra: list[str]) -> list[Problem]:
    from apache_beam.runners.runner import _RUNNER_MAP

    runner = config.beam.runner
    for arg in extra:
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
    problems: list[Problem] = []
    known = {v.rsplit(".", 1)[1] for v in _RUNNER_MAP.values()}
    if "." not in runner and runner.lower() not in _RUNNER_MAP and runner.lower() != "direct":
        problems.append(
            Problem(
                "beam.runner",
                f"unknown Beam runner {runner!r}; expected one of "
                f"{sorted(known)} or a dotted class path",
            )  # fmt: skip
        )
    from beam_pipeline.runners.options import beam_args

    try:  # the runner's own demands (Dataflow: remote root and temp locations)
        beam_args(config, extra)
    except ConfigError as exc:
        key, _, message = str(exc).partition(": ")
        problems.append(Problem(key, message))
    flags = [*config.beam.options, *extra]
    unknown, error = _unknown_options(flags)
    if error:
        problems.append(Problem("beam.options", error))
    for flag in unknown:
        problems.append(
            Problem(
                "beam.options",
                f"{flag}: not a Beam pipeline option (see "
                "`python -m apache_beam.examples.wordcount --help` for Beam's own)",
            )  # fmt: skip
        )
    return problems


def _unknown_options(flags: list[str]) -> tuple[list[str], str]:
    """Flags no Beam options class declares (runner option modules imported first), and a
    parse error (a bad value) if any."""
    with contextlib.suppress(ImportError):  # their options register on import
        import apache_beam.runners.portability.flink_runner  # noqa: F401
        import apache_beam.runners.portability.spark_runner  # noqa: F401
    from apache_beam.options import pipeline_options
    from apache_beam.options.pipeline_options import PipelineOptions

    parser_class = getattr(pipeline_options, "_BeamArgumentParser", argparse.ArgumentParser)
    parser = parser_class(add_help=False, allow_abbrev=False)
    seen: set[type] = set()
    todo = [PipelineOptions]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                with contextlib.suppress(argparse.ArgumentError):
                    sub._add_argparse_args(parser)  # type: ignore[attr-defined]
    parser.exit_on_error = False
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            _, rest = parser.parse_known_args(flags)
    except (argparse.ArgumentError, SystemExit) as exc:
        return [], f"{exc}"
    return [r.split("=", 1)[0] for r in rest if r.startswith("--")], ""
